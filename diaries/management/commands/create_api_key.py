from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from diaries.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for USER and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key, e.g. the device it is for")
        parser.add_argument("--create-user", action="store_true", help="Create USER (without a password) if missing")

    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"]
        user = User.objects.filter(username=username).first()
        if user is None:
            if not options["create_user"]:
                raise CommandError(f"No user named {username!r}; pass --create-user to create one")
            user = User.objects.create_user(username=username)
        _, key = api_key_create(user=user, name=options["name"])
        self.stderr.write(f"API key for {username} (shown once; store it now):")
        self.stdout.write(key)
