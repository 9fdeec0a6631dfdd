"""Audio files follow their rows: however a recording is deleted (an entry, a user, the admin,
a cascade), its file is removed from storage once the deletion commits."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from transcription.models import Recording


@receiver(post_delete, sender=Recording)
def delete_audio_with_recording(sender, instance: Recording, **kwargs) -> None:
    from transcription.services import delete_stored_audio

    name = instance.audio.name
    if name:
        transaction.on_commit(lambda: delete_stored_audio(name))
