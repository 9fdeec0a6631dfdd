from django.apps import AppConfig


class DiariesConfig(AppConfig):
    name = "diaries"
    verbose_name = "Diaries"
