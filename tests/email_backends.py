"""Email backends that fail the way real ones can, for tests that need a fault."""

from django.core.mail.backends.smtp import EmailBackend

EXPLODING_ADDRESS = "explodes@client.example"


class ExplodingBackend(EmailBackend):
    """Django's SMTP backend, except that an email to EXPLODING_ADDRESS fails with an error no
    email backend is known to raise (as a buggy ESP library might): nobody can tell whether it
    went out."""

    def send_messages(self, email_messages):
        for email in email_messages:
            if any(EXPLODING_ADDRESS in recipient for recipient in email.recipients()):
                raise ZeroDivisionError("the backend broke while sending")
        return super().send_messages(email_messages)
