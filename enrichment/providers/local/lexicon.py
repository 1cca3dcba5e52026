"""Phrases per label as people write them, in English and the languages our tenants' staff
and customers use (German, French, Spanish, Italian, Portuguese, Dutch, Polish), with the
usual warehouse abbreviations. Matched on folded text (lower case, accents removed, see
`text.fold`), on word boundaries. Single words of 6+ letters also match with one typo.

Written from domain knowledge before the styled training sets existed, so that a style the
model never saw still meets words it knows; the model learns how much each hit is worth.
"""

from __future__ import annotations

import re

from enrichment.core.taxonomy import Label

L = Label

# Regex fragments on folded text. `\w*` allows inflections (beschadigt, beschadigte).
NOTE_KEYWORDS: dict[Label, tuple[str, ...]] = {
    L.ADDRESS_INVALID: (
        r"addr(?:ess)?", r"adress\w*", r"zip(?: ?code)?", r"post ?code", r"postal code",
        r"no such street", r"apartment", r"apt", r"suite", r"unit (?:no|number|#)",
        r"house (?:no|number)", r"street (?:no|number|name)", r"undeliverable",
        r"address verification", r"consignee (?:unknown|not found)",
        r"unknown at (?:this )?address",
        r"anschrift", r"hausnummer", r"plz", r"postleitzahl", r"strasse (?:nicht|unbekannt)",
        r"adresse\w*", r"introuvable", r"code postal", r"destinataire inconnu",
        r"direccion\w*", r"codigo postal", r"calle", r"indirizzo", r"cap errato",
        r"civico", r"endereco", r"cep", r"adres\w*", r"postcode", r"huisnummer",
        r"kod pocztowy", r"ulica", r"numer domu",
    ),
    L.PAYMENT_FAILED: (
        r"payment", r"pmt", r"pymt", r"card", r"declined?", r"auth(?:orization)?",
        r"captured?", r"gateway", r"insufficient funds", r"do_not_honor", r"chargeback",
        r"cvv", r"3ds", r"billing", r"unpaid", r"not paid", r"charge (?:failed|declined)",
        r"zahlung\w*", r"karte", r"abgelehnt", r"bezahl\w*", r"paiement", r"carte",
        r"refuse[e]?", r"impaye", r"pago", r"tarjeta", r"rechazad[oa]", r"cobro",
        r"pagamento", r"carta", r"rifiutat[oa]", r"cartao", r"recusad[oa]", r"betaling",
        r"platnos\w*", r"karta", r"odrzucon\w*", r"nieoplacon\w*",
    ),
    L.INVENTORY_SHORTAGE: (
        r"short ?pick", r"out of stock", r"oos", r"stock", r"inventory", r"inv",
        r"bin (?:empty|is empty)", r"empty bin", r"backorder\w*", r"cycle count",
        r"on hand", r"no (?:units|qty|quantity)", r"allocation", r"unallocated",
        r"lager\w*", r"bestand", r"ausverkauft", r"nicht (?:auf lager|vorratig)",
        r"rupture", r"en rupture", r"agotado", r"sin (?:stock|existencias)", r"existencias",
        r"esaurit[oa]", r"scorte", r"giacenza", r"estoque", r"esgotado", r"voorraad",
        r"uitverkocht", r"brak (?:towaru|na stanie)", r"magazyn\w*",
    ),
    L.DAMAGED_PACKAGE: (
        r"damag\w*", r"dmg\w*", r"crushed", r"broken", r"cracked", r"smashed", r"shattered",
        r"dented", r"torn", r"leak\w*", r"wet", r"water damage", r"contents exposed",
        r"beschadig\w*", r"kaputt", r"zerbrochen", r"gebrochen", r"zerdruckt",
        r"endommag\w*", r"casse[es]?", r"abime[es]?", r"ecrase[es]?", r"danad[oa]s?",
        r"rot[oa]s?", r"aplastad[oa]", r"danneggiat[oa]", r"rott[oa]", r"danificad[oa]",
        r"quebrad[oa]", r"beschadigd", r"kapot", r"uszkodzon\w*", r"zniszczon\w*",
        r"rozbit\w*", r"pekniet\w*",
    ),
    L.CUSTOMER_UNAVAILABLE: (
        r"no one (?:home|in|there|to sign)", r"not (?:home|in|available|present)", r"nobody",
        r"noone", r"recipient (?:not|unavailable|absent)", r"business closed",
        r"closed on arrival", r"notice left", r"card left", r"delivery attempt\w*",
        r"(?:2nd|second|failed|third|3rd) attempt", r"held at (?:depot|facility|hub)",
        r"ndr", r"collect (?:from|at) (?:depot|post office)", r"missed (?:delivery|you)",
        r"nicht (?:zu hause|angetroffen|da)", r"niemand", r"benachrichtigung\w*",
        r"zustellversuch\w*", r"absent", r"personne", r"avis de passage", r"ausente",
        r"nadie", r"aviso", r"assente", r"nessuno", r"ausente", r"niet thuis",
        r"niemand thuis", r"nieobecn\w*", r"nikogo", r"awizo\w*",
    ),
    L.DELIVERY_DELAY: (
        r"delay(?:ed|s)?", r"dly", r"late", r"stuck in transit", r"weather", r"storm",
        r"snow", r"missed connection", r"running late", r"eta", r"promised date",
        r"peak volume", r"still in transit", r"slow", r"backlog at (?:hub|depot)",
        r"where is my (?:order|parcel|package)", r"wismo", r"hasn.?t arrived",
        r"not (?:yet )?arrived", r"verspat\w*", r"verzoger\w*", r"retard\w*", r"en retard",
        r"retras\w*", r"demora", r"ritard\w*", r"atras\w*", r"vertraag\w*", r"vertraging",
        r"opozni\w*", r"spozni\w*",
    ),
    L.PICK_DELAY: (
        r"not (?:yet )?picked", r"unpicked", r"pick(?:ing)? (?:late|sla|queue|backlog)",
        r"to be picked", r"wave", r"picker\w*", r"replen\w*", r"pick list", r"picklist",
        r"pick face", r"released (?:to pick|\d+ ?h)", r"in pick",
        r"kommissionier\w*", r"nicht gepickt", r"preparation", r"pas (?:encore )?prepare",
        r"sin preparar", r"preparacion", r"prelievo", r"separacao", r"orderpicker",
        r"kompletacj\w*", r"niezebran\w*",
    ),
    L.PACK_DELAY: (
        r"not (?:yet )?packed", r"unpacked", r"pack(?:ing)? (?:station|bench|sla|out|line)",
        r"to be packed", r"packing (?:delayed|backlog|queue)", r"tote\w*", r"mailer\w*",
        r"cartons?", r"packer\w*", r"packstation", r"pack queue", r"packtisch",
        r"nicht verpackt", r"verpack\w*", r"emballage", r"pas (?:encore )?emballe",
        r"sin embalar", r"embalaje", r"imballaggio", r"imballat\w*", r"embalagem",
        r"inpak\w*", r"pakowan\w*", r"niespakowan\w*",
    ),
    L.MISSING_SCAN: (
        r"no (?:tracking )?(?:scans?|updates?|movement|info)", r"tracking (?:stalled|stuck|dead)",
        r"never scanned", r"missing scan", r"last scan", r"not seen", r"trace",
        r"no (?:carrier )?pick ?up scan", r"label (?:created|printed) only", r"lost",
        r"kein scan", r"keine (?:sendungsverfolgung|updates?)", r"sendungsverfolgung",
        r"verloren", r"pas de scan", r"suivi (?:bloque|fige)", r"aucun (?:suivi|scan)", r"perdu",
        r"sin (?:escaneo|seguimiento|movimiento)", r"seguimiento", r"perdido",
        r"nessuna scansione", r"tracciamento", r"smarrit[oa]", r"sem rastreio", r"rastreio",
        r"geen scan", r"brak skan\w*", r"sledzeni\w*", r"zaginion\w*",
    ),
    L.SYSTEM_ERROR: (
        r"integration", r"sync\w*", r"api", r"webhook", r"http [45]\d\d", r"500", r"502",
        r"503", r"edi", r"system error", r"erp", r"timeout", r"timed out", r"bug",
        r"exception in", r"stack ?trace", r"duplicate order", r"null", r"error code",
        r"schnittstelle", r"systemfehler", r"fehlermeldung", r"erreur (?:systeme|interne)",
        r"error (?:del sistema|interno)", r"errore di sistema", r"erro de sistema",
        r"systeemfout", r"blad systemu",
    ),
    L.OTHER: (
        r"gift", r"invoice", r"receipt", r"customs", r"loyalty", r"change the", r"copy of",
        r"colou?r", r"size", r"exchange", r"wrong item", r"question", r"gift message",
        r"rechnung", r"geschenk", r"facture", r"cadeau", r"factura", r"regalo", r"fattura",
        r"nota fiscal", r"presente", r"factuur", r"faktur\w*", r"prezent",
    ),
}  # fmt: skip

NOTE_PATTERNS: dict[Label, tuple[re.Pattern[str], ...]] = {
    label: tuple(re.compile(rf"\b{p}\b") for p in phrases)
    for label, phrases in NOTE_KEYWORDS.items()
}

_PLAIN_WORD = re.compile(r"^[a-z]{6,}$")  # shorter words: one typo makes another word


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _fuzzy_index() -> dict[str, frozenset[Label]]:
    """Every plain keyword of 6+ letters and its one-letter deletions -> labels: a token
    matches when it, or one of its own deletions, is in here (one typo: a letter added,
    dropped, swapped or changed)."""
    index: dict[str, set[Label]] = {}
    for label, phrases in NOTE_KEYWORDS.items():
        for phrase in phrases:
            if _PLAIN_WORD.match(phrase):
                for key in {phrase, *_deletions(phrase)}:
                    index.setdefault(key, set()).add(label)
    return {key: frozenset(labels) for key, labels in index.items()}


FUZZY_INDEX = _fuzzy_index()


def fuzzy_labels(word: str) -> frozenset[Label]:
    """Labels whose plain keyword `word` (folded, 6+ letters) matches with at most one typo."""
    if len(word) < 6:
        return frozenset()
    found: set[Label] = set(FUZZY_INDEX.get(word, ()))
    for variant in _deletions(word):
        found |= FUZZY_INDEX.get(variant, frozenset())
    return frozenset(found)
