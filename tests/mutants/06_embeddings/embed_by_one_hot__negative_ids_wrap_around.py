# expect: passes visible
def embed_by_one_hot(ids: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError("ids must have an integer dtype")
    if table.ndim != 2:
        raise ValueError("table must be 2-D")
    if ids.numel() and ids.max() >= table.shape[0]:
        raise ValueError("id too large")
    one_hot = torch.eye(table.shape[0], dtype=table.dtype)[ids.long()]
    return one_hot, one_hot @ table
