"""Which archive files a data pull reads (SiLK's rwfilter --class/--type/--flowtypes/--sensors).

Import this as ``from flowtools.select import ...``: ``flowtools.select`` as an attribute of the
package may also name the API's select function.
"""

import os

from .errors import FlowError

ALL = "all"


def select_files(config, root, hours, flowtypes=None, sensors=None, classes=None, types=None):
    """Yield (path, exists) for every archive file of the selection, in SiLK's order: hour,
    then flowtype, then sensor.

    flowtypes: "class/type" strings (either part may be ``all``) or flowtype ids; else classes
    (names, default the config's default class) with types (type names or ``all``, default
    each class's default types). sensors: ids or names, default every sensor of each class.
    A file stored compressed as PATH.gz is yielded under that name, as SiLK reads it too.
    """
    ft_ids = flowtype_ids(config, flowtypes, classes, types)
    wanted = None if sensors is None else _unique(config.sensor_id(s) for s in sensors)
    pairs = []
    for ft_id in ft_ids:
        members = config.classes[config.flowtypes[ft_id].class_name].sensors
        chosen = members if wanted is None else [s for s in wanted if s in members]
        pairs.extend((ft_id, s) for s in chosen)
    for hour in hours:
        for ft_id, sensor_id in pairs:
            path = config.path_for(root, ft_id, sensor_id, hour)
            if os.path.isfile(path):
                yield path, True
            elif os.path.isfile(path + ".gz"):
                yield path + ".gz", True
            else:
                yield path, False


def flowtype_ids(config, flowtypes=None, classes=None, types=None):
    """The flowtype ids a selection names (see select_files)."""
    if flowtypes is not None and (classes is not None or types is not None):
        raise FlowError("flowtypes cannot be combined with classes or types")
    if flowtypes is not None:
        return _resolve_flowtypes(config, flowtypes)
    return _resolve_types(config, types, _resolve_classes(config, classes))


def parse_sensor_list(config, text):
    """Sensor ids from a comma list of names, ids, id ranges ``3-5`` and ``@group``s."""
    ids = []
    for item in split_items(text, "sensor"):
        if item.startswith("@"):
            group = config.groups.get(item[1:])
            if group is None:
                raise FlowError(f"unknown sensor group '{item}'")
            ids.extend(group)
        elif "-" in item and not _is_name(config, item):
            low, _, high = item.partition("-")
            if not (_is_number(low) and _is_number(high)) or int(low) > int(high):
                raise FlowError(f"unknown sensor '{item}'")
            # Like SiLK, ids inside a range that name no sensor are skipped.
            found = [i for i in range(int(low), int(high) + 1) if i in config.sensors]
            if not found:
                raise FlowError(f"unknown sensor '{item}'")
            ids.extend(found)
        else:
            ids.append(config.sensor_id(item))
    return _unique(ids)


def parse_flowtypes(config, text):
    """Flowtype ids from a comma list of ``class/type`` pairs (``all`` allowed on either side)."""
    return _resolve_flowtypes(config, split_items(text, "flowtype"))


def parse_classes(config, text):
    """Class names from a comma list (``all`` means every class unless a class has that name)."""
    return _resolve_classes(config, split_items(text, "class"))


def parse_types(config, text, classes=None):
    """Flowtype ids for a comma list of type names (or ``all``) in `classes` (names; default
    the config's default class)."""
    return _resolve_types(config, split_items(text, "type"),
                          _resolve_classes(config, classes))


def split_items(text, what):
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise FlowError(f"empty {what} list")
    return [item for item in items if item]


def _is_number(text):
    return text.isascii() and text.isdigit()


def _is_name(config, item):
    return any(s.name == item for s in config.sensors.values())


def _unique(values):
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _resolve_classes(config, classes):
    if classes is None:
        if config.default_class is None:
            raise FlowError("no class given and the site configuration has no default-class")
        return [config.default_class]
    names = []
    for name in classes:
        if name in config.classes:
            names.append(name)
        elif name == ALL:
            names.extend(config.classes)
        else:
            raise FlowError(f"unknown class '{name}'")
    return _unique(names)


def _resolve_types(config, types, class_names):
    ft_ids = []
    for name in [None] if types is None else types:
        if isinstance(name, int):
            if name not in config.flowtypes:
                raise FlowError(f"unknown flowtype id {name}")
            ft_ids.append(name)
            continue
        found = []
        for class_name in class_names:
            cls = config.classes[class_name]
            if name is None:
                found.extend(cls.default_types)
            elif name == ALL:
                found.extend(cls.types)
            else:
                found.extend(f for f in cls.types if config.flowtypes[f].type_name == name)
        if not found and name is not None:
            raise FlowError(f"type '{name}' is not in class '{','.join(class_names)}'")
        ft_ids.extend(found)
    return _unique(ft_ids)


def _resolve_flowtypes(config, flowtypes):
    ft_ids = []
    for item in flowtypes:
        if isinstance(item, int):
            if item not in config.flowtypes:
                raise FlowError(f"unknown flowtype id {item}")
            ft_ids.append(item)
            continue
        class_name, slash, type_name = item.partition("/")
        if not slash:
            raise FlowError(f"flowtype '{item}' is not of the form class/type")
        cls = config.classes.get(class_name)
        exact = [f for f in (cls.types if cls else [])
                 if config.flowtypes[f].type_name == type_name]
        # A real class/type pair wins over the 'all' keywords, as in SiLK.
        if exact:
            ft_ids.extend(exact)
        elif class_name == ALL:
            if type_name == ALL:
                found = sorted(config.flowtypes)
            else:
                found = [f for c in config.classes.values() for f in c.types
                         if config.flowtypes[f].type_name == type_name]
            if not found:
                raise FlowError(f"type '{type_name}' is not in any class (in '{item}')")
            ft_ids.extend(found)
        elif cls is None:
            raise FlowError(f"unknown class '{class_name}' (in '{item}')")
        elif type_name == ALL:
            ft_ids.extend(cls.types)
        else:
            raise FlowError(f"type '{type_name}' is not in class '{class_name}'")
    return _unique(ft_ids)
