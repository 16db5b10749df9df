"""API access and audit: bearer tokens with their roles, the rate limits of the API, and the audit log of what
operators did. An installed app of its own (label `config`, as it was when it lived in `config/`), between the
kernel below and every context above: the API views of the contexts ask it who calls, and their services
write its audit log."""
