"""Reference implementations, one module per method, grouped by taxonomy category.

Imported as ``vlmeft.methods`` (setuptools maps this folder into the package).
Methods are looked up through :mod:`vlmeft.registry`, never by importing this package.
"""
