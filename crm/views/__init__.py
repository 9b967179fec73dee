"""The manager workspace's pages that crm owns: Today, leads, the lead card, the pipeline and
notifications. Thin: they read through crm.selectors and write through crm.services."""
