"""Incoming mail: one handler behind every channel (Anymail inbound webhooks, IMAP polling).

Each channel hands a parsed message to `services.receive_email`, which reads it, finds whose it
is, stores it once and lets it take effect.

- `decoding`: raw mail as text (header values, headers, text parts), fit for any database.
- `letters`: a message read into a `Letter` and classified as a reply, an automatic reply or a
  bounce; its own text and the excerpt shown on the timeline.
- `bounces`: delivery status notifications (RFC 3464): which recipients failed, and for which
  of our emails.
- `matching`: whose letter it is (the thread it answers, else the sender's address).
- `services`: the writes: receiving a letter, attaching unmatched mail to a lead by hand,
  keeping a message that could not be handled.
- `imap`: polling an IMAP mailbox (`manage.py fetch_mail`).
- `receivers`: the receiver of Anymail's inbound signal (`/anymail/<esp>/inbound/`).
- `esp_webhooks`: the door in front of Anymail's webhooks (which ESPs answer, authentication,
  bad bodies kept).
- `checks`: what `manage.py check` says about them.

`decoding`, `letters` and `bounces` only read messages: no models of their own, no database.
"""
