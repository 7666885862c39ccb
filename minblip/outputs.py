"""Output containers readable like transformers' ModelOutput / BatchFeature.

Fields are read as attributes (out.last_hidden_state) or keys (out["last_hidden_state"]);
fields that are None are left out of the mapping, as in transformers, and iteration / to_tuple()
follow field order.
"""


class ModelOutput(dict):
    """A dict whose keys are also attributes. Construct with keyword fields in their order."""

    def __init__(self, **fields):
        super().__init__((k, v) for k, v in fields.items() if v is not None)
        self._names = tuple(fields)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self:
            return self[name]
        if name in self._names:
            return None
        raise AttributeError(f"{type(self).__name__} has no field {name!r}; fields: {list(self)}")

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self):
        return tuple(self[k] for k in self._names if k in self)

    def __repr__(self):
        def brief(v):
            shape = getattr(v, "shape", None)
            return f"array{tuple(shape)} {v.dtype}" if shape is not None else type(v).__name__

        inner = ", ".join(f"{k}={brief(v)}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"


class BatchFeature(ModelOutput):
    """What processors return: pixel_values, input_ids, attention_mask as numpy arrays."""
