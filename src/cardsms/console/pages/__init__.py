"""The console's pages, one module per concept; each handler takes the Console (templates, services,
the session codec) and the request with its checked session (console/app.py's `view`)."""
