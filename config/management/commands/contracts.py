"""Prints the message contracts, or checks or rewrites the README's blocks generated from them."""

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.contracts import asyncapi_text, catalogue_markdown, catalogue_schema_text, readme_drift, readme_rewritten
from saga.diagram import mermaid

PRINTED: dict[str, Callable[[], str]] = {
    "asyncapi": lambda: asyncapi_text("yaml"),
    "asyncapi-json": lambda: asyncapi_text("json"),
    "schema": catalogue_schema_text,
    "diagram": mermaid,
    "catalogue": catalogue_markdown,
}


class Command(BaseCommand):
    help = (
        "Print a message contract (--print), check that the README's generated blocks match the code "
        "(--check, exits 1 when not), or rewrite them (--write-readme)."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--print", choices=sorted(PRINTED), dest="printed", help="write one document to stdout")
        action.add_argument("--check", action="store_true", help="fail when a generated block of the README drifted")
        action.add_argument("--write-readme", action="store_true", help="regenerate the README's blocks in place")
        parser.add_argument("--readme", default=str(Path(settings.BASE_DIR) / "README.md"), help="the README to use")

    def handle(self, *args, **options):
        if options["printed"]:
            self.stdout.write(PRINTED[options["printed"]](), ending="")
            return
        readme = Path(options["readme"])
        text = readme.read_text(encoding="utf-8")
        if options["check"]:
            drifted = readme_drift(text)
            if drifted:
                raise CommandError(
                    f"{readme.name} is out of date in {', '.join(drifted)}: run `manage.py contracts --write-readme`"
                )
            self.stdout.write(f"{readme.name} matches the code")
            return
        try:
            rewritten = readme_rewritten(text)
        except LookupError as error:
            raise CommandError(str(error)) from None
        readme.write_text(rewritten, encoding="utf-8")
        self.stdout.write(f"{readme.name}: {'rewritten' if rewritten != text else 'already up to date'}")
