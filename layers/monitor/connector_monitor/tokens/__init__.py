"""A portal's tokens: the credentials model, the token errors, the ports of the stores that keep
pairs, the refresh policy, the table-then-secret reader and the once-a-run loader.

Nothing here imports `aws/` or `bitrix24/`: the stores and the OAuth call are handed in
(`composition.py` does that), so this package is tested with in-memory stores.
"""
