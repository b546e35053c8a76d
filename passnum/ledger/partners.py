"""Synthetic but realistic partners: 87 collectivités and a few venues.

SIRENs and SIRETs carry valid Luhn check digits (python-stdnum computes them), names are
French, booklet sizes vary (10 or 5 vouchers). Deterministic: the same seed gives the same
partners, so demo output and tests are reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from stdnum import luhn
from stdnum.iban import calc_check_digits as iban_check_digits

KINDS = ("Région", "Département", "Communauté de communes", "Communauté d'agglomération",
         "Métropole", "Ville", "CCAS de")
PLACES = ("Hauts-de-France", "Occitanie", "Bretagne", "Normandie", "Nouvelle-Aquitaine",
          "Grand Est", "Corse", "Gironde", "Nord", "Finistère", "Hérault", "Isère", "Loire",
          "Marne", "Vienne", "Savoie", "Landes", "Aude", "Cantal", "Creuse", "Lozère",
          "Pays de Morlaix", "Val de Garonne", "Cœur de Beauce", "Grand Chambéry", "Lille",
          "Rennes", "Nantes", "Brest", "Lyon", "Marseille", "Toulouse", "Bordeaux", "Metz",
          "Nancy", "Dijon", "Besançon", "Tours", "Poitiers", "Limoges", "Pau", "Bayonne",
          "Perpignan", "Nîmes", "Avignon", "Grenoble", "Annecy", "Clermont-Ferrand", "Rouen",
          "Caen", "Le Havre", "Amiens", "Reims", "Troyes", "Orléans", "Angers", "Le Mans",
          "Guadeloupe", "Martinique", "La Réunion", "Guyane", "Mayotte")
DEPARTMENTS = ("59", "31", "35", "76", "33", "67", "2A", "29", "34", "38", "42", "51", "86",
               "73", "40", "11", "15", "23", "48", "971", "972", "974", "973", "976")


@dataclass(frozen=True)
class Partner:
    siren: str
    name: str
    vouchers_per_booklet: Literal[5, 10]
    department: str


@dataclass(frozen=True)
class Venue:
    siret: str
    name: str
    iban: str
    address_code: str


def luhn_number(random_source: random.Random, digits: int) -> str:
    body = "".join(str(random_source.randint(0, 9)) for _ in range(digits - 1))
    if body[0] == "0":
        body = "2" + body[1:]
    return body + luhn.calc_check_digit(body)


def collectivites(count: int = 87, seed: int = 2020) -> list[Partner]:
    random_source = random.Random(seed)
    partners: list[Partner] = []
    sirens: set[str] = set()
    while len(partners) < count:
        siren = luhn_number(random_source, 9)
        if siren in sirens:
            continue
        sirens.add(siren)
        name = f"{random_source.choice(KINDS)} {random_source.choice(PLACES)}"
        size: Literal[5, 10] = 5 if random_source.random() < 0.25 else 10
        partners.append(Partner(siren, name, size, random_source.choice(DEPARTMENTS)))
    return partners


def french_iban(random_source: random.Random) -> str:
    bban = "".join(str(random_source.randint(0, 9)) for _ in range(23))
    return f"FR{iban_check_digits('FR00' + bban)}{bban}"


def venues(count: int = 10, seed: int = 2021) -> list[Venue]:
    random_source = random.Random(seed)
    result = []
    for index in range(count):
        siren = luhn_number(random_source, 9)
        siret = siren + (nic := f"{random_source.randint(1, 9999):04d}")
        siret = siret + luhn.calc_check_digit(siren + nic)
        department = random_source.choice(("75", "59", "33", "69", "13"))
        address_code = f"{department}{random_source.randint(1, 300):03d}"
        result.append(Venue(siret, f"Espace numérique n°{index + 1}",
                            french_iban(random_source), address_code))
    return result
