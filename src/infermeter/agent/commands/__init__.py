"""One module per `infermeter` subcommand."""
