"""Did it bring them back: coupon codes, redemptions, visits, control groups and results."""
