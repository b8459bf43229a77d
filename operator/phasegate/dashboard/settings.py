"""The dashboard's defaults, apart so that the command line reads them without loading the
server."""

ALERTS = 'ALERTS{alertstate="firing",severity="critical"}'
PORT = 3100
