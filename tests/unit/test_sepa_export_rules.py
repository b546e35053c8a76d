"""The SEPA transfer file a bank accepts: the debtor account comes from configuration and is
checked (python-stdnum), and the debtor agent follows the EPC guidelines in both schemas
sepaxml writes (a BIC when there is one, Othr/Id NOTPROVIDED otherwise, never an empty
<FinInstnId/>). Each document is validated here against the pain.001 XSD with xmlschema,
independently of sepaxml's own check."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ElementTree
from datetime import date
from pathlib import Path

import pytest
import sepaxml
import xmlschema

from services.redeemer.statements import (
    AGENT_NOT_PROVIDED,
    SEPA_SCHEMAS,
    InvalidDebtor,
    StatementLine,
    debtor_account,
    render_pain001,
)

from . import IBAN, SIRET

DEBTOR_IBAN = "FR76 3000 6000 0112 3456 7890 189"
DEBTOR_BIC = "AGRIFRPP"
LINES = [StatementLine("2026-03", SIRET, "Fabrique numérique", IBAN, 1, 3, 3000,
                       "0b4a6f5e-1f7e-5a43-9d2e-0d3c2f5b7a11")]
BIC_ELEMENT = {"pain.001.001.03": "BIC", "pain.001.001.09": "BICFI"}


@functools.lru_cache(maxsize=None)
def _schema(schema: str) -> xmlschema.XMLSchema:
    """Compiled here, not taken from the code under test (a second or so each)."""
    return xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / f"{schema}.xsd"))


def _validated(document: bytes, schema: str) -> ElementTree.Element:
    _schema(schema).validate(document.decode())
    return ElementTree.fromstring(document)


def _debtor_agent(root: ElementTree.Element, schema: str) -> ElementTree.Element:
    namespace = {"p": f"urn:iso:std:iso:20022:tech:xsd:{schema}"}
    agents = root.findall(".//p:PmtInf/p:DbtrAgt/p:FinInstnId", namespace)
    assert len(agents) == 1
    return agents[0]


def _local_names(element: ElementTree.Element) -> list[str]:
    return [node.tag.rsplit("}", 1)[1] for node in element.iter()]


@pytest.mark.parametrize("schema", SEPA_SCHEMAS)
def test_a_debtor_bic_is_the_agent(schema: str) -> None:
    debtor = debtor_account("Opérateur du pass numérique", DEBTOR_IBAN, DEBTOR_BIC)
    root = _validated(render_pain001(LINES, debtor, date(2026, 4, 10), schema), schema)
    agent = _debtor_agent(root, schema)
    assert _local_names(agent) == ["FinInstnId", BIC_ELEMENT[schema]]
    assert agent[0].text == DEBTOR_BIC
    namespace = {"p": f"urn:iso:std:iso:20022:tech:xsd:{schema}"}
    assert root.findtext(".//p:DbtrAcct/p:Id/p:IBAN", namespaces=namespace) == (
        "FR7630006000011234567890189")
    assert root.findtext(".//p:Dbtr/p:Nm", namespaces=namespace) == (
        "Operateur du pass numerique")


@pytest.mark.parametrize("schema", SEPA_SCHEMAS)
def test_without_bic_the_agent_is_notprovided_never_empty(schema: str) -> None:
    debtor = debtor_account("Opérateur", DEBTOR_IBAN, "")
    document = render_pain001(LINES, debtor, date(2026, 4, 10), schema)
    agent = _debtor_agent(_validated(document, schema), schema)
    assert _local_names(agent) == ["FinInstnId", "Othr", "Id"]
    assert agent[0][0].text == AGENT_NOT_PROVIDED
    assert b"<FinInstnId />" not in document and b"<FinInstnId/>" not in document


@pytest.mark.parametrize(("name", "iban", "bic", "says"), [
    ("", "", "", "set PASSNUM_DEBTOR_IBAN and PASSNUM_DEBTOR_NAME"),
    ("Opérateur", "  ", None, "set PASSNUM_DEBTOR_IBAN"),
    ("", DEBTOR_IBAN, None, "set PASSNUM_DEBTOR_NAME"),
    ("Opérateur", "FR7630006000011234567890180", None, "not a valid IBAN"),
    ("Opérateur", DEBTOR_IBAN, "AGRIFRP", "not a valid BIC"),
    ("O" * 71, DEBTOR_IBAN, None, "longer than 70"),
])
def test_a_missing_or_wrong_debtor_account_is_refused(name: str, iban: str, bic: str | None,
                                                      says: str) -> None:
    with pytest.raises(InvalidDebtor, match=says):
        debtor_account(name, iban, bic)
