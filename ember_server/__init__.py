"""Ember over HTTP: `ember serve`, a FastAPI adapter over the Selector (see README, "Serving selections over HTTP")."""
