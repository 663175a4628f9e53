"""Bitrix24 REST: the client, its error taxonomy and the answer parsers."""
