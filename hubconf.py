"""PyTorch Hub entry points: ``torch.hub.load("<owner>/zoo", "resnet50", head=10)``.

Every card is an entry point under its name (``resnet50.a1_in1k``), its aliases (``ResNet50``) and
its architecture (``resnet50``, the default tag); keyword arguments go to ``zoo.load``. Works with
``source="local"`` on a checkout, offline for the bundled ``efficientnet_lite0/1/2``.
"""

dependencies = ["torch", "timm", "safetensors", "huggingface_hub", "rich", "requests", "filelock"]


def _entry(name):
    def entry(**kwargs):
        import zoo

        return zoo.load(name, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"zoo.load({name!r}, **kwargs): see zoo.load for head, freeze, pool, features, input_size."
    return entry


def _register():
    from zoo.cards.registry import get_registry

    registry = get_registry()
    names = set(registry.by_name) | set(registry.by_alias) | set(registry.by_arch)
    for name in names:
        globals()[name] = _entry(name)  # getattr() finds dotted names too, as torch.hub uses


_register()
