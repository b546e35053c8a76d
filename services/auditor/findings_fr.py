"""What each finding code of the auditor means, in plain words for a finance officer:
French first, English too. The HTML report shows the title and the explanation above the
finding's own evidence (its event ids and its technical detail).

tests/unit/test_audit_report_findings.py reads the auditor's source for every code it can
emit and fails when one has no explanation here, in either language.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    title: str
    text: str


FRENCH: dict[str, Explanation] = {
    # The log itself: its chains of events
    "altered_event": Explanation(
        "Événement modifié",
        "Le contenu d'un événement ne correspond plus à son empreinte dans la chaîne\u00a0: il a "
        "été modifié après avoir été écrit."),
    "broken_link": Explanation(
        "Chaîne d'événements rompue",
        "Un événement ne se rattache pas à celui qui le précède\u00a0: la suite des événements a "
        "été coupée ou falsifiée."),
    "conflicting_events": Explanation(
        "Deux événements à la même place",
        "Deux événements différents revendiquent la même position dans une chaîne\u00a0: l'un a "
        "été injecté ou substitué."),
    "reordered_event": Explanation(
        "Événements dans le désordre",
        "Un événement apparaît après un événement qui devait le suivre\u00a0: le journal a été "
        "réordonné."),
    "missing_event": Explanation(
        "Événement manquant",
        "Un ou plusieurs événements de la chaîne ont disparu du journal (supprimés ou "
        "perdus)."),
    "unchained_event": Explanation(
        "Événement sans chaînage",
        "Un enregistrement ne porte pas de lien de chaîne valide\u00a0: il n'a pas été écrit par un "
        "service du registre."),
    "invalid_event": Explanation(
        "Événement illisible",
        "Un enregistrement du journal ne peut pas être lu comme un événement valide."),
    "head_signature_invalid": Explanation(
        "Signature de service invalide",
        "La signature qui accompagne un événement n'est celle d'aucun service du registre\u00a0: "
        "l'événement a pu être écrit par un tiers."),
    "unsigned_chain_tail": Explanation(
        "Fin de chaîne non signée",
        "Les derniers événements d'une chaîne ne sont couverts par aucune signature d'un "
        "service\u00a0: ils ont pu être ajoutés après coup."),
    "unknown_stream": Explanation(
        "Chaîne inconnue",
        "Des événements appartiennent à une chaîne qu'aucun service du registre ne tient\u00a0: "
        "ils n'ont pas été décidés par le registre."),
    "request_decided_twice": Explanation(
        "Demande traitée deux fois",
        "Une même demande a produit deux fois ses effets à deux endroits du journal."),
    "redemption_in_the_future": Explanation(
        "Utilisation datée dans le futur",
        "Une utilisation de chèque est datée après l'instant de l'audit, au-delà de la "
        "tolérance d'horloge\u00a0: le registre n'a pas pu la décider à cette date."),
    # Signed monthly checkpoints
    "checkpoint_signature_invalid": Explanation(
        "Signature de clôture invalide",
        "La signature d'un point de contrôle mensuel ne correspond pas à son contenu."),
    "checkpoint_untrusted_key": Explanation(
        "Clôture signée par une clé inconnue",
        "Un point de contrôle mensuel est signé par une clé qui ne figure pas parmi les clés "
        "de confiance de l'auditeur."),
    "checkpoint_mismatch": Explanation(
        "Historique réécrit après une clôture",
        "Les événements d'un mois déjà clôturé et signé ne sont plus ceux que la signature "
        "couvre\u00a0: l'historique a été réécrit."),
    # Envelopes and funds
    "activated_exceeds_funds": Explanation(
        "Activation au-delà des fonds reçus",
        "Des chèques ont été activés pour une valeur supérieure aux fonds effectivement reçus "
        "de la collectivité."),
    "funds_total_mismatch": Explanation(
        "Cumul des fonds reçus erroné",
        "Un versement annonce un cumul de fonds reçus différent de la somme des versements."),
    "activation_mismatch": Explanation(
        "Montant activé incohérent",
        "Le montant activé selon l'enveloppe diffère de la valeur des carnets activés."),
    "books_do_not_balance": Explanation(
        "Comptes déséquilibrés",
        "Les chèques émis ne sont pas égaux à la somme des chèques utilisés, en circulation, "
        "bloqués, expirés et non activés."),
    # Booklets
    "booklet_issued_twice": Explanation(
        "Carnet émis deux fois",
        "Le même numéro de carnet a été émis deux fois."),
    "activation_of_unissued_booklet": Explanation(
        "Activation d'un carnet inexistant",
        "Un carnet a été activé alors qu'il n'a jamais été émis."),
    "booklet_activated_twice": Explanation(
        "Carnet activé deux fois",
        "Un carnet a été activé deux fois\u00a0: sa valeur risque d'être comptée deux fois."),
    "activation_amount_mismatch": Explanation(
        "Montant d'activation erroné",
        "Le montant d'une activation ne correspond pas à la valeur du carnet."),
    "block_of_unissued_booklet": Explanation(
        "Blocage d'un carnet inexistant",
        "Un carnet a été déclaré perdu ou volé alors qu'il n'a jamais été émis."),
    "block_applied_without_report": Explanation(
        "Blocage appliqué sans déclaration",
        "Le service des chèques a bloqué un carnet que la collectivité n'a jamais déclaré "
        "perdu ou volé."),
    "distribution_of_unissued_booklet": Explanation(
        "Remise d'un carnet inexistant",
        "Un carnet a été remis à un bénéficiaire alors qu'il n'a jamais été émis."),
    # Redemptions
    "redemption_of_unissued_voucher": Explanation(
        "Chèque inexistant utilisé",
        "Un chèque qui n'a jamais été émis a été encaissé."),
    "redemption_amount_mismatch": Explanation(
        "Montant d'utilisation erroné",
        "Un chèque a été encaissé pour un montant différent de sa valeur faciale."),
    "redemption_of_inactive_voucher": Explanation(
        "Chèque non activé utilisé",
        "Un chèque a été encaissé avant l'activation de son carnet, c'est-à-dire avant que "
        "la collectivité ait payé."),
    "redemption_of_blocked_voucher": Explanation(
        "Chèque bloqué utilisé",
        "Un chèque d'un carnet déclaré perdu ou volé a été encaissé alors que le "
        "service des chèques avait déjà appliqué le blocage."),
    "redemption_outside_validity": Explanation(
        "Chèque utilisé hors validité",
        "Un chèque a été encaissé en dehors de sa période de validité (tolérance de janvier "
        "comprise)."),
    "redemption_by_unaccredited_venue": Explanation(
        "Structure non habilitée",
        "Un chèque a été encaissé par une structure qui n'était pas habilitée à ce moment-là "
        "(suspendue, radiée ou inconnue)."),
    "redemption_outside_perimeter": Explanation(
        "Utilisation hors du périmètre",
        "Un chèque a été encaissé par une structure située hors du périmètre géographique "
        "fixé par la commande."),
    "voucher_redeemed_twice": Explanation(
        "Chèque utilisé deux fois",
        "Le même chèque a été encaissé deux fois\u00a0: la seconde utilisation est une double "
        "dépense."),
    "cancellation_of_unknown_redemption": Explanation(
        "Annulation sans utilisation",
        "Une annulation porte sur une utilisation qui n'existe pas ou qui a été faite par une "
        "autre structure."),
    "cancellation_too_late": Explanation(
        "Annulation tardive",
        "Une utilisation a été annulée un autre jour que celui où elle a été faite (en heure "
        "de France) : une structure ne peut annuler que le jour même ; "
        "l'utilisation reste due."),
    # Settlement of the venues
    "statement_lists_unknown_redemption": Explanation(
        "Relevé avec une utilisation inconnue",
        "Un relevé de paiement d'une structure liste une utilisation absente du journal."),
    "statement_pays_another_venue": Explanation(
        "Relevé payant une autre structure",
        "Un relevé paie à une structure un chèque encaissé par une autre."),
    "statement_pays_a_later_redemption": Explanation(
        "Relevé payant une utilisation postérieure",
        "Un relevé mensuel paie un chèque encaissé après la fin du mois qu'il couvre."),
    "redemption_paid_twice": Explanation(
        "Utilisation payée deux fois",
        "Le même chèque encaissé figure sur deux relevés de paiement."),
    "statement_totals_wrong": Explanation(
        "Totaux de relevé erronés",
        "Le nombre de chèques ou le montant d'un relevé ne correspond pas aux utilisations "
        "qu'il liste."),
    "month_closed_twice": Explanation(
        "Mois clôturé deux fois",
        "Le même mois de paiement a été clôturé deux fois."),
    "closing_totals_wrong": Explanation(
        "Totaux de clôture erronés",
        "Les totaux d'une clôture mensuelle diffèrent de la somme de ses relevés."),
    "statement_without_closing": Explanation(
        "Relevé sans clôture",
        "Des relevés de paiement existent pour un mois qui n'a pas été clôturé."),
    # Agreement with the services' database
    "live_state_disagrees": Explanation(
        "Base de données en désaccord",
        "L'état tenu par les services dans leur base de données diffère de celui que le "
        "journal rejoué donne."),
    "chain_head_disagrees": Explanation(
        "Fin de chaîne en désaccord",
        "Le dernier événement connu d'un service n'est pas le dernier du journal\u00a0: des "
        "événements ont été retranchés ou ajoutés."),
}

ENGLISH: dict[str, Explanation] = {
    "altered_event": Explanation(
        "Altered event", "An event's content no longer matches its link in the chain: it "
        "was modified after it was written."),
    "broken_link": Explanation(
        "Broken chain", "An event does not link to the one before it: the sequence of "
        "events was cut or forged."),
    "conflicting_events": Explanation(
        "Two events in one place", "Two different events claim the same chain position: "
        "one was injected or replaced."),
    "reordered_event": Explanation(
        "Events out of order", "An event comes after one that should follow it: the log "
        "was reordered."),
    "missing_event": Explanation(
        "Missing event", "One or more events of the chain are gone from the log (deleted "
        "or lost)."),
    "unchained_event": Explanation(
        "Unchained event", "A record carries no valid chain link: no service of the ledger "
        "wrote it."),
    "invalid_event": Explanation(
        "Unreadable event", "A record of the log cannot be read as a valid event."),
    "head_signature_invalid": Explanation(
        "Invalid service signature", "The signature an event carries is no service's of the "
        "ledger: a third party may have written it."),
    "unsigned_chain_tail": Explanation(
        "Unsigned chain tail", "The last events of a chain are covered by no service's "
        "signature: they may have been appended afterwards."),
    "unknown_stream": Explanation(
        "Unknown chain", "Events belong to a chain no service of the ledger keeps: the ledger "
        "did not decide them."),
    "request_decided_twice": Explanation(
        "Request decided twice", "One request took effect twice, at two places in the log."),
    "redemption_in_the_future": Explanation(
        "Redemption dated in the future", "A redemption is dated after the audit's instant, "
        "beyond the clock tolerance: the ledger cannot have decided it then."),
    "checkpoint_signature_invalid": Explanation(
        "Invalid checkpoint signature", "A monthly checkpoint's signature does not match "
        "its content."),
    "checkpoint_untrusted_key": Explanation(
        "Checkpoint signed by an unknown key", "A monthly checkpoint is signed by a key the "
        "auditor does not trust."),
    "checkpoint_mismatch": Explanation(
        "History rewritten after a checkpoint", "The events of a signed month are no longer "
        "those the signature covers: the history was rewritten."),
    "activated_exceeds_funds": Explanation(
        "Activation beyond funds received", "Vouchers were activated for more than the "
        "funds actually received from the collectivité."),
    "funds_total_mismatch": Explanation(
        "Wrong running total of funds", "A payment states a running total that differs "
        "from the sum of the payments."),
    "activation_mismatch": Explanation(
        "Inconsistent activated amount", "The envelope's activated amount differs from the "
        "value of the activated booklets."),
    "books_do_not_balance": Explanation(
        "Books do not balance", "Issued vouchers do not equal the sum of redeemed, "
        "outstanding, blocked, expired and inactive vouchers."),
    "booklet_issued_twice": Explanation(
        "Booklet issued twice", "The same booklet number was issued twice."),
    "activation_of_unissued_booklet": Explanation(
        "Activation of a booklet never issued", "A booklet was activated but never issued."),
    "booklet_activated_twice": Explanation(
        "Booklet activated twice", "A booklet was activated twice: its value may be counted "
        "twice."),
    "activation_amount_mismatch": Explanation(
        "Wrong activation amount", "An activation's amount does not match the booklet's "
        "value."),
    "block_of_unissued_booklet": Explanation(
        "Block of a booklet never issued", "A booklet reported lost or stolen was never "
        "issued."),
    "block_applied_without_report": Explanation(
        "Block applied without a report", "The redeemer blocked a booklet that its "
        "collectivité never reported lost or stolen."),
    "distribution_of_unissued_booklet": Explanation(
        "Hand-out of a booklet never issued", "A booklet handed to a beneficiary was never "
        "issued."),
    "redemption_of_unissued_voucher": Explanation(
        "Voucher never issued was redeemed", "A voucher that was never issued was redeemed."),
    "redemption_amount_mismatch": Explanation(
        "Wrong redemption amount", "A voucher was redeemed for another amount than its face "
        "value."),
    "redemption_of_inactive_voucher": Explanation(
        "Inactive voucher redeemed", "A voucher was redeemed before its booklet was "
        "activated, that is before the collectivité paid."),
    "redemption_of_blocked_voucher": Explanation(
        "Blocked voucher redeemed", "A voucher of a booklet reported lost or stolen was "
        "redeemed after the redeemer had applied the block."),
    "redemption_outside_validity": Explanation(
        "Redeemed outside validity", "A voucher was redeemed outside its validity period "
        "(January tolerance included)."),
    "redemption_by_unaccredited_venue": Explanation(
        "Venue not accredited", "A voucher was redeemed by a venue that was not accredited "
        "at that time (suspended, revoked or unknown)."),
    "redemption_outside_perimeter": Explanation(
        "Redeemed outside the perimeter", "A voucher was redeemed by a venue outside the "
        "geographic perimeter of its order."),
    "voucher_redeemed_twice": Explanation(
        "Voucher redeemed twice", "The same voucher was redeemed twice: the second is a "
        "double spend."),
    "cancellation_of_unknown_redemption": Explanation(
        "Cancellation without redemption", "A cancellation names a redemption that does not "
        "exist or was made by another venue."),
    "cancellation_too_late": Explanation(
        "Late cancellation", "A redemption was cancelled on another day than the day it was "
        "made (in France): a venue may cancel on the same day only; the redemption stands."),
    "statement_lists_unknown_redemption": Explanation(
        "Statement lists an unknown redemption", "A venue's payment statement lists a "
        "redemption that is not in the log."),
    "statement_pays_another_venue": Explanation(
        "Statement pays another venue", "A statement pays a venue for a voucher another "
        "venue redeemed."),
    "statement_pays_a_later_redemption": Explanation(
        "Statement pays a later redemption", "A monthly statement pays a voucher redeemed "
        "after the end of its month."),
    "redemption_paid_twice": Explanation(
        "Redemption paid twice", "The same redemption is on two payment statements."),
    "statement_totals_wrong": Explanation(
        "Wrong statement totals", "A statement's voucher count or amount does not match the "
        "redemptions it lists."),
    "month_closed_twice": Explanation(
        "Month closed twice", "The same payment month was closed twice."),
    "closing_totals_wrong": Explanation(
        "Wrong closing totals", "A monthly closing's totals differ from the sum of its "
        "statements."),
    "statement_without_closing": Explanation(
        "Statement without closing", "Payment statements exist for a month that was not "
        "closed."),
    "live_state_disagrees": Explanation(
        "Database disagrees", "The state the services keep in their database differs from "
        "the state the replayed log gives."),
    "chain_head_disagrees": Explanation(
        "Chain end disagrees", "A service's last known event is not the log's last: events "
        "were cut off or appended."),
}

EXPLANATIONS = {"fr": FRENCH, "en": ENGLISH}


def explain(code: str, language: str) -> Explanation:
    """The explanation of a finding code; a code without one is shown as itself, so that a
    new code never hides a finding (the unit test makes that case fail first)."""
    known = EXPLANATIONS[language].get(code)
    if known is not None:
        return known
    fallback = {"fr": "Anomalie sans explication enregistrée", "en": "Unexplained finding"}
    return Explanation(f"{fallback[language]} ({code})", "")
