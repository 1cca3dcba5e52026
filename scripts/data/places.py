"""Addresses outside the English-speaking world, as customers type them, and the ways an
address goes wrong. Names and streets are ordinary ones; phones keep the order's fictional
number; postal codes have each country's real shape (so a wrong one can be told)."""

from __future__ import annotations

import random
from typing import Any

# (country, city, province, zip, street template, names): {n} a house number, {m} a flat.
PLACES: tuple[tuple[str, str, str, str, str, tuple[str, ...]], ...] = (
    ("PL", "Warszawa", "MZ", "00-950", "ul. Marszałkowska {n}/{m}",
     ("Łukasz Wiśniewski", "Zofia Kamińska", "Paweł Zieliński")),
    ("ES", "Madrid", "M", "28013", "Calle Mayor {n}, {m}º B",
     ("José Núñez", "María Fernández", "Iñaki Etxeberria")),
    ("FR", "Lyon", "ARA", "69002", "{n} rue de la République",
     ("Hélène Dubois", "François Lefèvre", "Zoé Benoît")),
    ("DE", "München", "BY", "80331", "Schillerstraße {n}",
     ("Jürgen Weiß", "Anna Schröder", "Gülşen Yılmaz")),
    ("IT", "Milano", "MI", "20121", "Via Dante {n}",
     ("Giulia Bianchi", "Niccolò Esposito", "Chiara Ricci")),
    ("NL", "Utrecht", "UT", "3511 LX", "Oudegracht {n}-{m}",
     ("Sanne de Vries", "Joost van Dijk", "Fatima El Amrani")),
    ("PT", "Lisboa", "LX", "1100-148", "Rua Augusta {n}, {m}º Esq.",
     ("João Gonçalves", "Inês Carvalho")),
    ("BR", "São Paulo", "SP", "01310-100", "Av. Paulista {n}, apto {m}",
     ("Luíza Araújo", "Thiago Conceição")),
    ("JP", "東京都渋谷区", "13", "150-0002", "渋谷2-{n}-{m}", ("山田 太郎", "Sato Yūko")),
    ("SE", "Göteborg", "O", "411 19", "Kungsgatan {n}", ("Åsa Lindqvist", "Björn Öberg")),
    ("MX", "Ciudad de México", "CMX", "06700", "Calle Durango {n}, Col. Roma Nte.",
     ("Ximena Hernández", "Andrés Peña")),
    ("CZ", "Praha", "10", "110 00", "Národní {n}", ("Jiří Dvořák", "Kateřina Svobodová")),
)  # fmt: skip
WRONG_ZIPS = {"PL": "00950", "ES": "2801", "FR": "6900", "DE": "8033", "IT": "201210",
              "NL": "3511", "PT": "1100", "BR": "0131", "JP": "1500", "SE": "4111 9",
              "MX": "067", "CZ": "1100", "US": "6270", "CA": "M5V", "GB": "M11",
              "AU": "20000"}  # fmt: skip


def international_address(rng: random.Random, phone: str) -> dict[str, Any]:
    country, city, province, zip_code, street, names = rng.choice(PLACES)
    return {
        "name": rng.choice(names),
        "address1": street.format(n=rng.randint(1, 180), m=rng.randint(1, 12)),
        "address2": "",
        "city": city,
        "province": province,
        "zip": zip_code,
        "country_code": country,
        "phone": phone,
    }


def _strip_number(line: str) -> str:
    return "".join(c for c in line if not c.isdigit()).strip(" ,/-º") or "Main Street"


def with_defect(rng: random.Random, address: dict[str, Any]) -> dict[str, Any]:
    """The address with one thing wrong, as it happens: a code of the wrong shape, a missing
    or placeholder field, no house number, the email typed into the street line."""
    out = dict(address)
    kind = rng.choice(("zip", "zip", "missing", "placeholder", "number", "email"))
    if kind == "zip":
        out["zip"] = WRONG_ZIPS.get(str(out.get("country_code")), "0000")
    elif kind == "missing":
        out[rng.choice(("zip", "city", "address1"))] = ""
    elif kind == "placeholder":
        out[rng.choice(("city", "address1"))] = rng.choice(("n/a", "-", "same as billing"))
    elif kind == "number":
        out["address1"], out["address2"] = _strip_number(str(out["address1"])), ""
    else:
        out["address1"] = f"{str(out.get('name', 'x')).split()[0].lower()}@example.com"
    return out
