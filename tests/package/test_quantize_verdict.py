from kennel.package.quantize import verdict


def test_a_drop_of_exactly_half_a_point_is_within() -> None:
    # 0.98 - 0.975 is 0.0050000000000000044 in floats: one photo in 200 must not drop int8
    assert verdict(0.98, 0.975, 9.2, 2.9).startswith("kept")


def test_a_larger_drop_or_no_speed_up_drops_int8() -> None:
    assert verdict(0.98, 0.97, 9.2, 2.9).startswith("dropped: accuracy fell 1.00 points")
    assert verdict(0.98, 0.98, 2.9, 9.2).startswith("dropped: not faster")
