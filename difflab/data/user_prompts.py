"""Prompts for Fashion-MNIST written the way a user might type them, for a test and nothing else.

The caption vocabularies of `data.captions` are built from templates: a model trained on the "seen" one and
scored on the "held_out" one is tested on new synonyms inside the same sentence shapes. These 100 prompts were
written apart from both (issue 38: "a cosy wool pullover", "comfortable shoes for walking"), ten per class, in
free wording: product names, uses, materials, colours and fits. Each is a `Caption` with the class it asks for
and, where the words say it, the shade (0 dark, 1 medium, 2 light) and the size (0 slim, 1 regular, 2 wide);
None where they do not.

Keep them out of training and out of every choice of model or encoder (they are the second held-out set of the
encoder benchmark, `benchmarks/text_encoders.py`): a figure measured on them is only honest while nothing was
tuned on them.
"""

from __future__ import annotations

from .captions import Caption

__all__ = ["USER_PROMPTS", "user_prompts"]

# (text, class, shade, size); classes: 0 t-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,
# 7 sneaker, 8 bag, 9 ankle boot
USER_PROMPTS = (
    ("a cosy cotton tee for summer", 0, None, None),
    ("plain black t shirt", 0, 0, None),
    ("an oversized white tshirt", 0, 2, 2),
    ("a basic top with short sleeves", 0, None, None),
    ("fitted grey tee", 0, 1, 0),
    ("graphic tee with a print on the front", 0, None, None),
    ("v-neck t-shirt in navy", 0, 0, None),
    ("a loose summer top", 0, None, 2),
    ("kids' t-shirt, light blue", 0, 2, None),
    ("something casual to wear on top, short sleeved", 0, None, None),
    ("denim jeans", 1, None, None),
    ("black skinny trousers", 1, 0, 0),
    ("wide-leg pants in cream", 1, 2, 2),
    ("a pair of joggers", 1, None, None),
    ("formal suit trousers", 1, None, None),
    ("leggings for yoga", 1, None, 0),
    ("khaki cargo pants", 1, None, None),
    ("baggy sweatpants", 1, None, 2),
    ("ivory linen trousers", 1, 2, None),
    ("something to wear on my legs", 1, None, None),
    ("a cosy wool pullover", 2, None, None),
    ("chunky knit sweater", 2, None, None),
    ("a warm hoodie for winter", 2, None, None),
    ("a fleece sweatshirt", 2, None, None),
    ("black turtleneck", 2, 0, None),
    ("a cream cable-knit sweater", 2, 2, None),
    ("heavy winter knitwear", 2, None, None),
    ("an oversized crewneck sweatshirt", 2, None, 2),
    ("grey marl jumper", 2, 1, None),
    ("a warm knitted top with long sleeves", 2, None, None),
    ("a little black dress", 3, 0, None),
    ("a flowing maxi dress", 3, None, None),
    ("floral summer dress", 3, None, None),
    ("a white wedding dress", 3, 2, None),
    ("bodycon dress", 3, None, 0),
    ("a sleeveless shift dress", 3, None, None),
    ("cocktail dress for a party", 3, None, None),
    ("ball gown", 3, None, None),
    ("a loose, airy beach dress", 3, None, 2),
    ("an elegant midi dress", 3, None, None),
    ("a warm puffer jacket", 4, None, None),
    ("long black trench coat", 4, 0, None),
    ("a beige raincoat", 4, 2, None),
    ("a heavy wool coat for winter", 4, None, None),
    ("denim jacket", 4, None, None),
    ("a quilted down jacket, oversized", 4, None, 2),
    ("leather biker jacket", 4, None, None),
    ("a padded ski jacket", 4, None, None),
    ("peacoat in dark grey", 4, 0, None),
    ("an outdoor jacket with a zip", 4, None, None),
    ("strappy summer sandals", 5, None, None),
    ("open-toe shoes for the beach", 5, None, None),
    ("gladiator sandals", 5, None, None),
    ("slides to wear at the pool", 5, None, None),
    ("high-heeled sandals", 5, None, None),
    ("black flip flops", 5, 0, None),
    ("toe-post sandals", 5, None, None),
    ("white wedge sandals", 5, 2, None),
    ("open shoes with thin straps", 5, None, None),
    ("sandals with a buckle", 5, None, None),
    ("a formal white shirt", 6, 2, None),
    ("checked flannel shirt", 6, None, None),
    ("a long-sleeved office shirt", 6, None, None),
    ("denim button-down", 6, None, None),
    ("oxford shirt", 6, None, None),
    ("a dark plaid shirt", 6, 0, None),
    ("hawaiian shirt", 6, None, None),
    ("a slim-fit business shirt", 6, None, 0),
    ("linen shirt with buttons", 6, None, None),
    ("a loose overshirt", 6, None, 2),
    ("comfortable shoes for walking", 7, None, None),
    ("white trainers", 7, 2, None),
    ("shoes for the gym", 7, None, None),
    ("low-top canvas shoes", 7, None, None),
    ("black sports shoes", 7, 0, None),
    ("tennis shoes", 7, None, None),
    ("chunky dad sneakers", 7, None, 2),
    ("slip-on sneakers", 7, None, None),
    ("skate shoes", 7, None, None),
    ("lightweight shoes for running", 7, None, None),
    ("a leather clutch", 8, None, None),
    ("a backpack for school", 8, None, None),
    ("a small black purse", 8, 0, 0),
    ("a big beach bag", 8, None, 2),
    ("crossbody bag", 8, None, None),
    ("a briefcase for work", 8, None, None),
    ("a white shopping bag", 8, 2, None),
    ("something to carry my things in", 8, None, None),
    ("messenger bag", 8, None, None),
    ("a canvas carryall", 8, None, None),
    ("black suede ankle boots", 9, 0, None),
    ("heeled boots for autumn", 9, None, None),
    ("lace-up combat boots", 9, None, None),
    ("short winter boots", 9, None, None),
    ("cowboy boots", 9, None, None),
    ("hiking boots", 9, None, None),
    ("a pair of zip-up boots with a block heel", 9, None, None),
    ("brown leather boots", 9, None, None),
    ("dark rain boots", 9, 0, None),
    ("stylish boots that stop at the ankle", 9, None, None),
)


def user_prompts() -> list[Caption]:
    """The 100 prompts (module doc) as Captions of split "user" (shade and size None where unstated)."""
    return [Caption(text, label, shade, size, "user") for text, label, shade, size in USER_PROMPTS]
