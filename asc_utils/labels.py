"""Class names, device ids and device groups of TAU Urban Acoustic Scenes 2022 Mobile (the order is fixed everywhere)."""

CLASSES: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)
CLASS_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
TRAIN_DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3")
UNSEEN_DEVICES: tuple[str, ...] = ("s4", "s5", "s6")
# Device ids whose complexity DCASE2025 checks (the evaluation set adds unseen devices s7..s10).
DCASE_COMPLEXITY_DEVICES: tuple[str, ...] = ("a", "b", "c") + tuple(f"s{i}" for i in range(1, 11))

DEVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "real": ("a", "b", "c"),
    "seen": ("s1", "s2", "s3"),
    "unseen": ("s4", "s5", "s6"),
}

CITIES: tuple[str, ...] = (
    "barcelona",
    "helsinki",
    "lisbon",
    "london",
    "lyon",
    "milan",
    "paris",
    "prague",
    "stockholm",
    "vienna",
)
