"""Every reason code the redeemer can record, explained to a person at a counter: in plain
French first, in English second.

The codes are the ledger's (`passnum/ledger/voucher.py`, `venue.py`, `settlement_month.py`,
`voucher_codes.py`) plus the two answers of the command gateway that a page can show
(`request_id_reused`, `outcome_pending`). tests/unit/test_reasons_fr.py reads the
redeemer's source and fails when a code it can record has no explanation here.

Any surface that shows a refusal to a person (the venue's counter page, a report) imports
`explain`; the JSON APIs keep answering with the codes themselves.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["fr", "en"]

# reason code -> (French, English). Sentences say what happened and what to do next.
REASONS: dict[str, tuple[str, str]] = {
    # A voucher code, in the order the redeemer checks it (REDEMPTION_PRECEDENCE).
    "malformed_code": (
        "Ce n'est pas un code de chèque : un code compte 21 lettres et chiffres "
        "(par exemple ABCD-EFGH-JKMN-PQRS-TVWX-Y). Vérifiez la saisie.",
        "This is not a voucher code: a code has 21 letters and digits "
        "(for example ABCD-EFGH-JKMN-PQRS-TVWX-Y). Check what was typed."),
    "mistyped_code": (
        "Ce code contient une faute de frappe (un caractère erroné ou deux caractères "
        "inversés). Ressaisissez-le en le relisant caractère par caractère.",
        "This code contains a typing mistake (a wrong character or two characters swapped). "
        "Type it again, checking each character."),
    "forged_code": (
        "Ce code n'a pas été émis par le pass numérique : le chèque est faux. "
        "Ne l'acceptez pas.",
        "This code was not issued by the pass numérique: the voucher is forged. "
        "Do not accept it."),
    "unknown_voucher": (
        "Ce chèque n'existe pas dans le registre : aucun carnet émis ne le contient.",
        "This voucher is not in the ledger: no issued booklet contains it."),
    "booklet_not_activated": (
        "Le carnet de ce chèque n'est pas encore activé : la collectivité ne l'a pas encore "
        "payé. Le chèque ne peut pas être encaissé pour l'instant.",
        "This voucher's booklet is not activated yet: the local authority has not paid for it "
        "yet. The voucher cannot be redeemed for now."),
    "scan_in_the_future": (
        "La date de ce passage est dans le futur : vérifiez l'heure de l'appareil ou la "
        "date écrite dans le fichier.",
        "This scan is dated in the future: check the device's clock or the date written in "
        "the file."),
    "booklet_not_activated_at_scan_time": (
        "À la date de ce passage, le carnet de ce chèque n'était pas encore activé : le "
        "chèque ne pouvait pas être encaissé ce jour-là.",
        "On the date of this scan the voucher's booklet was not activated yet: the voucher "
        "could not be redeemed that day."),
    "booklet_blocked": (
        "Le carnet de ce chèque a été bloqué (déclaré perdu, volé ou annulé) : "
        "le chèque ne peut plus être encaissé.",
        "This voucher's booklet was blocked (reported lost, stolen or cancelled): "
        "the voucher can no longer be redeemed."),
    "outside_validity": (
        "Ce chèque n'est pas valable aujourd'hui : la date du jour est en dehors de sa période "
        "de validité.",
        "This voucher is not valid today: today is outside its validity period."),
    "outside_perimeter": (
        "Ce chèque n'est pas valable chez vous : la collectivité l'a réservé à un autre "
        "territoire que celui de votre structure.",
        "This voucher is not valid at your venue: the local authority reserved it for "
        "another area than yours."),
    "provider_not_accredited": (
        "Votre structure n'est pas habilitée à encaisser des chèques en ce moment "
        "(habilitation suspendue ou retirée). Contactez l'opérateur du pass numérique.",
        "Your venue may not redeem vouchers at the moment (accreditation suspended or "
        "revoked). Contact the pass numérique operator."),
    "venue_not_accredited_at_scan_time": (
        "À la date de ce passage, votre structure n'était pas habilitée : un passage daté "
        "d'avant votre habilitation ne peut pas être encaissé.",
        "On the date of this scan your venue was not accredited: a scan dated before your "
        "accreditation cannot be redeemed."),
    "already_redeemed": (
        "Ce chèque a déjà été encaissé : il ne peut l'être qu'une fois.",
        "This voucher was already redeemed: it can be redeemed only once."),
    # Cancelling a redemption.
    "not_redeemed_here": (
        "Ce chèque n'a pas été encaissé par votre structure : il n'y a rien à annuler.",
        "This voucher was not redeemed by your venue: there is nothing to cancel."),
    "already_settled": (
        "Cet encaissement figure déjà sur un relevé mensuel de paiement : "
        "il ne peut plus être annulé.",
        "This redemption is already on a monthly payment statement: it can no longer be "
        "cancelled."),
    "cancellation_too_late": (
        "Un encaissement ne peut être annulé que le jour même.",
        "A redemption can be cancelled on the same day only."),
    # Accrediting venues and changing their status (the operator's commands).
    "invalid_siret": (
        "Le numéro SIRET n'est pas valide (14 chiffres, avec une clé de contrôle).",
        "The SIRET number is not valid (14 digits, with a check digit)."),
    "invalid_iban": (
        "L'IBAN n'est pas valide : vérifiez-le sur le relevé d'identité bancaire.",
        "The IBAN is not valid: check it against the bank details."),
    "already_accredited": (
        "Cette structure est déjà habilitée.",
        "This venue is already accredited."),
    "unknown_provider": (
        "Cette structure n'est pas connue du registre.",
        "This venue is not known to the ledger."),
    "provider_revoked": (
        "L'habilitation de cette structure a été retirée définitivement : "
        "son statut ne peut plus changer.",
        "This venue's accreditation was revoked for good: its status can no longer change."),
    "not_supported": (
        "Cette demande n'est pas prise en charge par le registre des encaissements.",
        "This request is not supported by the redemption ledger."),
    # Closing a settlement month.
    "month_already_closed": (
        "Ce mois est déjà clôturé : ses relevés ont été émis.",
        "This month is already closed: its statements were issued."),
    "later_month_closed": (
        "Un mois plus récent est déjà clôturé : ses relevés ont repris les encaissements de "
        "ce mois.",
        "A later month is already closed: its statements took this month's redemptions."),
    "month_not_ended": (
        "Ce mois n'est pas terminé : il ne peut être clôturé qu'après son dernier jour.",
        "This month has not ended: it can be closed only after its last day."),
    # Answers of the command gateway that a page can show.
    "request_id_reused": (
        "Ce formulaire a déjà servi pour une autre demande : rechargez la page et "
        "recommencez.",
        "This form was already used for another request: reload the page and try again."),
    "outcome_pending": (
        "La demande est enregistrée mais sa réponse tarde. Réessayez dans un instant : "
        "elle ne sera pas comptée deux fois.",
        "The request is recorded but its answer is late. Try again in a moment: "
        "it will not be counted twice."),
}


def explain(reason: str, language: Language = "fr") -> str:
    """The sentence for `reason`; a code without one still says something true, and shows
    the code so that support can look it up."""
    sentences = REASONS.get(reason)
    if sentences is None:
        if language == "en":
            return f"The ledger refused this request (code {reason})."
        return f"Le registre a refusé cette demande (code {reason})."
    return sentences[1] if language == "en" else sentences[0]
