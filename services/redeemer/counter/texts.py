"""What the counter page says, in French first and in English, and how it writes numbers,
amounts and dates: with babel's CLDR data for each locale, never formatted by hand.

Refusals are explained by `passnum.edge.reasons_fr`, shared with every other surface.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from babel import Locale
from babel.dates import format_skeleton, format_time
from babel.numbers import format_currency, format_decimal

from passnum.edge.reasons_fr import explain
from passnum.ledger.time import FRANCE

LOCALES = {"fr": "fr_FR", "en": "en_GB"}

# key -> (French, English). `{name}` fields are filled by `text`.
TEXTS: dict[str, tuple[str, str]] = {
    "title": ("Guichet pass numérique", "Pass numérique counter"),
    "sign_in_heading": ("Connexion de votre structure", "Sign in your venue"),
    "sign_in_intro": (
        "Ce guichet sert aux structures habilitées à vérifier et encaisser les chèques du "
        "pass numérique.",
        "This counter lets accredited venues check and redeem pass numérique vouchers."),
    "token_label": ("Jeton d'accès de votre structure", "Your venue's access token"),
    "token_help": (
        "Collez le jeton remis par l'opérateur du pass numérique. Il sert une seule fois, à "
        "la connexion : le navigateur ne le garde pas.",
        "Paste the token the pass numérique operator gave you. It is used once, to sign in: "
        "the browser does not keep it."),
    "sign_in": ("Se connecter", "Sign in"),
    "sign_in_refused": ("Ce jeton n'est pas reconnu, ou il a été révoqué.",
                        "This token is not recognised, or it was revoked."),
    "not_a_venue": (
        "Ce jeton n'est pas celui d'une structure : le guichet est réservé aux structures "
        "habilitées.",
        "This is not a venue's token: the counter is for accredited venues."),
    "signed_out": ("Vous êtes déconnecté.", "You are signed out."),
    "session_expired": ("Votre session a pris fin : reconnectez-vous.",
                        "Your session has ended: sign in again."),
    "sign_out": ("Se déconnecter", "Sign out"),
    "switch_language": ("English", "Français"),
    "venue_status_warning": (
        "L'habilitation de votre structure est {status} : le guichet refusera les "
        "encaissements.",
        "Your venue's accreditation is {status}: the counter will refuse redemptions."),
    "status_suspended": ("suspendue", "suspended"),
    "status_revoked": ("retirée", "revoked"),
    "status_unknown": ("inconnue du registre", "unknown to the ledger"),
    "code_label": ("Code du chèque", "Voucher code"),
    "code_help": (
        "Les 21 caractères imprimés sous le QR code ; les tirets et les espaces sont "
        "facultatifs.",
        "The 21 characters printed under the QR code; dashes and spaces are optional."),
    "scan": ("Scanner le QR code", "Scan the QR code"),
    "scan_stop": ("Arrêter la caméra", "Stop the camera"),
    "scan_failed": ("La caméra n'a pas pu démarrer : saisissez le code.",
                    "The camera could not start: type the code."),
    "check": ("Vérifier", "Check"),
    "redeem": ("Encaisser", "Redeem"),
    "valid": ("valide", "valid"),
    "valid_detail": ("Le chèque {voucher} peut être encaissé ici aujourd'hui.",
                     "Voucher {voucher} can be redeemed here today."),
    "not_valid": ("non valide", "not valid"),
    "redeemed": ("Chèque encaissé", "Voucher redeemed"),
    "redeemed_detail": ("Chèque {voucher} : {amount}, le {when}.",
                        "Voucher {voucher}: {amount}, on {when}."),
    "refused": ("Encaissement refusé", "Redemption refused"),
    "earlier_redemption": ("Il a été encaissé le {when}.", "It was redeemed on {when}."),
    "cancelled": ("Encaissement annulé", "Redemption cancelled"),
    "cancelled_detail": ("Le chèque {voucher} peut de nouveau être encaissé.",
                         "Voucher {voucher} can be redeemed again."),
    "cancel_refused": ("Annulation refusée", "Cancellation refused"),
    "voucher_of": ("Chèque {voucher}.", "Voucher {voucher}."),
    "cancel": ("Annuler", "Cancel"),
    "cancel_confirm": ("Annuler l'encaissement du chèque {voucher} ?",
                       "Cancel the redemption of voucher {voucher}?"),
    "month_redemptions": ("Encaissements de {month}", "Redemptions of {month}"),
    "no_redemptions": ("Aucun encaissement ce mois-ci.", "No redemption this month."),
    "more_redemptions": ("Les {shown} premiers sont affichés sur {total}.",
                         "The first {shown} of {total} are shown."),
    "column_voucher": ("Chèque", "Voucher"),
    "column_when": ("Date", "Date"),
    "column_amount": ("Montant", "Amount"),
    "column_action": ("Annulation", "Cancellation"),
    "on_statement": ("payé sur le relevé de {month}", "paid on the {month} statement"),
    "total": ("Total", "Total"),
    "statements": ("Relevés mensuels", "Monthly statements"),
    "no_statements": (
        "Aucun relevé pour l'instant : le relevé d'un mois est émis après sa fin.",
        "No statement yet: a month's statement is issued after the month ends."),
    "statement_line": ("{month} (partie {part}) : {vouchers}, {amount}, émis le {when}.",
                       "{month} (part {part}): {vouchers}, {amount}, issued on {when}."),
    "download_csv": ("Télécharger (CSV)", "Download (CSV)"),
    "download_vouchers_csv": ("Détail des chèques (CSV)", "Vouchers paid (CSV)"),
    "download_pdf": ("Relevé (PDF)", "Statement (PDF)"),
    "pdf_title": ("Relevé de paiement pass numérique : {month}, partie {part}",
                  "Pass numérique payment statement: {month}, part {part}"),
    "pdf_venue": ("Structure : {name}, SIRET {siret}", "Venue: {name}, SIRET {siret}"),
    "pdf_account": ("Compte crédité : {iban}", "Account credited: {iban}"),
    "pdf_issued": ("Relevé émis le {when}", "Statement issued on {when}"),
    "pdf_total": ("Total : {vouchers}, {amount}", "Total: {vouchers}, {amount}"),
    "pdf_event": ("Référence dans le registre : {event_id}",
                  "Reference in the ledger: {event_id}"),
    "pdf_footer": (
        "Ce relevé reprend l'événement du registre du pass numérique cité en référence : "
        "chaque chèque y est payé une seule fois.",
        "This statement restates the pass numérique ledger event given as its reference: "
        "each voucher in it is paid once."),
    "column_number": ("N°", "No."),
    "voucher_one": ("{count} chèque", "{count} voucher"),
    "voucher_other": ("{count} chèques", "{count} vouchers"),
    "when": ("{date} à {time}", "{date} at {time}"),
    "forbidden": (
        "Demande refusée : ce formulaire a expiré ou ne vient pas de cette page. Rien n'a "
        "été enregistré. Rechargez la page et recommencez.",
        "Request refused: this form has expired or does not come from this page. Nothing "
        "was recorded. Reload the page and try again."),
    "back": ("Retour au guichet", "Back to the counter"),
    "starting": ("Le guichet démarre. Réessayez dans un instant.",
                 "The counter is starting. Try again in a moment."),
    "failure": (
        "Le guichet a rencontré une erreur. Réessayez : une demande répétée n'est jamais "
        "comptée deux fois.",
        "The counter met an error. Try again: a repeated request is never counted twice."),
    "not_found": ("Cette page n'existe pas.", "This page does not exist."),
    "too_large": ("Ce formulaire est trop long.", "This form is too long."),
}


def text(key: str, language: str, **fields: object) -> str:
    french, english = TEXTS[key]
    return (english if language == "en" else french).format(**fields)


def reason_text(reason: str, language: str) -> str:
    return explain(reason, "en" if language == "en" else "fr")


def _locale(language: str) -> str:
    return LOCALES.get(language, LOCALES["fr"])


def amount_text(cents: int, language: str) -> str:
    """Integer cents as euros, exactly (a Decimal, never a float)."""
    return format_currency(Decimal(cents).scaleb(-2), "EUR", locale=_locale(language))


def count_text(count: int, language: str) -> str:
    """"1 chèque", "2 chèques": the plural rule is the locale's (in French 0 is singular)."""
    form = "one" if Locale.parse(_locale(language)).plural_form(count) == "one" else "other"
    return text(f"voucher_{form}", language, count=format_decimal(count,
                                                                   locale=_locale(language)))


def when_text(instant: datetime, language: str) -> str:
    """An instant as a venue in France reads it: its date and time in Europe/Paris."""
    local = instant.astimezone(FRANCE)
    return text("when", language,
                date=format_skeleton("yMMMd", local, locale=_locale(language)),
                time=format_time(local, "short", tzinfo=FRANCE,
                                     locale=_locale(language)))


def month_text(month: str, language: str) -> str:
    """"2026-12" as "décembre 2026"."""
    year, number = (int(part) for part in month.split("-"))
    return format_skeleton("yMMMM", date(year, number, 1), locale=_locale(language))
