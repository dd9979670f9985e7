"""Step 3: static analysis of the cells on the Python AST (the notebook is never executed)."""
