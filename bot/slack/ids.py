"""Every Block Kit action_id and modal callback_id the bot uses, defined once.

`incident_ack`, `rollback_confirm`, `rollback_cancel`, `scale_confirm`, `scale_cancel`, `alert_declare`
and `alert_dismiss` are a contract with outside tools (DESIGN.md): never rename them.
"""

ACK = "incident_ack"
POST_UPDATE = "incident_post_update"
DIAGNOSE = "incident_diagnose"
RESOLVE = "incident_resolve"
ROLLBACK_PROPOSE = "rollback_propose"
ROLLBACK_CONFIRM = "rollback_confirm"
ROLLBACK_CANCEL = "rollback_cancel"
SCALE_CONFIRM = "scale_confirm"  # value: "<incident>:<proposal>:move" or ":stay" (traffic pinned)
SCALE_CANCEL = "scale_cancel"  # value: "<incident>:<proposal>"
SNOOZE_30M = "reminder_snooze_30m"  # value: "<incident number>:30"
SNOOZE_1H = "reminder_snooze_1h"  # value: "<incident number>:60"
ALERT_DECLARE = "alert_declare"  # on alert proposals; value: "alert:<alert id>"
ALERT_DISMISS = "alert_dismiss"  # value: "alert:<alert id>"
REOPEN = "incident_reopen"  # on a resolved incident's re-fire message; value: "<incident number>"

DECLARE_MODAL = "declare_modal"
UPDATE_MODAL = "update_modal"

# block_ids / action_ids of modal inputs, read back from view_submission state
TITLE_BLOCK, TITLE_INPUT = "title", "title_input"
SEVERITY_BLOCK, SEVERITY_INPUT = "severity", "severity_input"
UPDATE_TEXT_BLOCK, UPDATE_TEXT_INPUT = "update_text", "update_text_input"
STATUS_BLOCK, STATUS_INPUT = "status", "status_input"
PUBLIC_BLOCK, PUBLIC_INPUT = "public", "public_input"

# The resolve form (the announcement's Resolve button opens it)
RESOLVE_MODAL = "resolve_modal"
RESOLVE_SUMMARY_BLOCK, RESOLVE_SUMMARY_INPUT = "resolve_summary", "resolve_summary_input"
ROOT_CAUSE_BLOCK, ROOT_CAUSE_INPUT = "root_cause", "root_cause_input"
IMPACT_BLOCK, IMPACT_INPUT = "customer_impact", "customer_impact_input"
RESOLVE_PUBLIC_BLOCK, RESOLVE_PUBLIC_INPUT = "resolve_public", "resolve_public_input"
