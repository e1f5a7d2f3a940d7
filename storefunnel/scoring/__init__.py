"""Lead scoring ("sift and sort"): who is likely to buy soon, and why."""
