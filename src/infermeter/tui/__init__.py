"""The Textual terminal UI (`infermeter top`). Nothing else in infermeter imports this package."""
