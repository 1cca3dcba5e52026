"""kombu's filesystem transport with atomic writes, for the embedded demo broker.

kombu's own `_put` creates the message file and then writes it; a consumer polling the folder
can move and read the file in between, get an empty message, and crash the worker
("Unrecoverable error: JSONDecodeError"). Writing under a temporary name the consumer ignores
and renaming it into place (atomic on one filesystem) closes that window.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # "<name>.tmp" does not end in ".<queue>.msg", so _get skips it until the rename.
        with open(final + ".tmp", "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.replace(final + ".tmp", final)


class Transport(filesystem.Transport):
    Channel = Channel
