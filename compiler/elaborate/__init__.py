"""The checker's parts, split by job (DESIGN §7): `state` (values, scopes, the shared base),
`evaluate` (expressions), `graph` (statements, repeats, blocks, nodes), `sections` (data,
train, sweep). compiler/rules.py holds the cross-checks that read entry facts; compiler/check.py
composes the parts into the pass.
"""
