"""What runs inside the app's processes (workers, Lambda instances, the offline replay): the ledger
writer, failpoints and the SDK-boundary hooks. Standard library and the SDK only: no imports of
the harness's heavy parts, and nothing here may raise into the app."""
