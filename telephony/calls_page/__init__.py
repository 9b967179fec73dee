"""The workspace's calls page (/calls/): the call log, its CSV export, and the report of calls
per manager and day with a chart. Reads only: who may see what comes from telephony.calls."""
