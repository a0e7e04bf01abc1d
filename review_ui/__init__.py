"""Review UI: the reviewer web app, accounts, decisions, reports and the audit trail."""
