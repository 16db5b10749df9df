from django.apps import AppConfig


class AccessConfig(AppConfig):
    """API tokens, rate limits and the audit log, which belong to no bounded context.

    Its label stays `config`, the one it had when these models lived in `config/`: the tables, the permissions
    (`config.change_apitoken`), the admin's URLs and the migration history keep their names."""

    name = "config.access"
    label = "config"
    verbose_name = "API access and audit"
    default_auto_field = "django.db.models.BigAutoField"
