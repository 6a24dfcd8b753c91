"""Cost: the price catalog, pricing of records, attribution of instance cost, energy and carbon."""
