"""Small, stratified, real subsets shipped inside the package (built by
``scripts/build_embedded_subsets.py``), so tiny and smoke runs need no download."""

__all__: list[str] = []  # data files only; read them with tfbdl.data.load_embedded
