import hashlib

from django.db import migrations, models


def hash_existing_addresses(apps, schema_editor):
    """Every suppression keeps the hash of its address, so erasing a person can blank it."""
    Suppression = apps.get_model("nurture", "Suppression")
    suppressions = list(Suppression.objects.filter(address__isnull=False, address_hash=""))
    for suppression in suppressions:
        suppression.address_hash = hashlib.sha256(suppression.address.encode()).hexdigest()
    Suppression.objects.bulk_update(suppressions, ["address_hash"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("nurture", "0006_managers_see_own_mailbox_limit"),
    ]

    operations = [
        migrations.AddField(
            model_name="suppression",
            name="address_hash",
            field=models.CharField(
                blank=True,
                db_index=True,
                editable=False,
                max_length=64,
                verbose_name="address hash (SHA-256)",
            ),
        ),
        migrations.AlterField(
            model_name="suppression",
            name="address",
            field=models.EmailField(blank=True, max_length=254, null=True, verbose_name="address"),
        ),
        migrations.RunPython(hash_existing_addresses, migrations.RunPython.noop),
    ]
