"""Every Block Kit action_id and modal callback_id the bot uses, defined once.

`incident_ack`, `rollback_confirm` and `rollback_cancel` are a contract with outside tools
(DESIGN.md): never rename them. Nor `alert_declare` and `alert_dismiss`.
"""

ACK = "incident_ack"
POST_UPDATE = "incident_post_update"
DIAGNOSE = "incident_diagnose"
RESOLVE = "incident_resolve"
ROLLBACK_PROPOSE = "rollback_propose"
ROLLBACK_CONFIRM = "rollback_confirm"
ROLLBACK_CANCEL = "rollback_cancel"
SNOOZE_30M = "reminder_snooze_30m"  # value: "<incident number>:30"
SNOOZE_1H = "reminder_snooze_1h"  # value: "<incident number>:60"
ALERT_DECLARE = "alert_declare"  # on alert proposals; value: "alert:<alert id>"
ALERT_DISMISS = "alert_dismiss"  # value: "alert:<alert id>"

DECLARE_MODAL = "declare_modal"
UPDATE_MODAL = "update_modal"

# block_ids / action_ids of modal inputs, read back from view_submission state
TITLE_BLOCK, TITLE_INPUT = "title", "title_input"
SEVERITY_BLOCK, SEVERITY_INPUT = "severity", "severity_input"
UPDATE_TEXT_BLOCK, UPDATE_TEXT_INPUT = "update_text", "update_text_input"
STATUS_BLOCK, STATUS_INPUT = "status", "status_input"
PUBLIC_BLOCK, PUBLIC_INPUT = "public", "public_input"
