"""Ports: what the services ask of the world, as protocols and the data that crosses them.

Services import these; adapters (`aws/`, `bitrix24/`) implement them and import nothing else of
the services. The token ports live with the tokens (`tokens/ports.py`).
"""
