"""The demo catalog's text queries for `lookalike eval`, in English and translated.

Each query names the Fashion-MNIST class it should find. Class prompts follow the training
template ("a photo of a {class}"); paraphrases use words no training caption contains
("running shoes" for Sneaker), so they measure what the frozen text tower brings, not what
training memorised. Every language has the same 20 queries, translated by hand the way a
shopper would type them (not word for word: "jeans" is "calça jeans" in Brazilian
Portuguese, a sneaker is a "basket" in French). Russian, Japanese and Chinese cover
non-Latin scripts. The eval never says which language a query is in: the languages are
only how the report groups them.
"""

from __future__ import annotations

# English paraphrase -> class.
PARAPHRASES = {
    "running shoes": "Sneaker",
    "handbag": "Bag",
    "winter jacket": "Coat",
    "jeans": "Trouser",
    "knitted sweater": "Pullover",
    "evening gown": "Dress",
    "flip-flops": "Sandal",
    "leather booties": "Ankle boot",
    "plain tee": "T-shirt/top",
    "button-down blouse": "Shirt",
}

# Per language: the class prompt of each class, then the paraphrases in PARAPHRASES'
# order (running shoes, handbag, winter jacket, jeans, knitted sweater, evening gown,
# flip-flops, leather booties, plain tee, button-down blouse).
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_TRANSLATED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "de": (
        (
            "ein Foto eines T-Shirts",
            "ein Foto einer Hose",
            "ein Foto eines Pullovers",
            "ein Foto eines Kleides",
            "ein Foto eines Mantels",
            "ein Foto einer Sandale",
            "ein Foto eines Hemdes",
            "ein Foto eines Turnschuhs",
            "ein Foto einer Tasche",
            "ein Foto einer Stiefelette",
        ),
        (
            "Laufschuhe",
            "Handtasche",
            "Winterjacke",
            "Jeans",
            "Strickpullover",
            "Abendkleid",
            "Zehentrenner",
            "Lederstiefeletten",
            "schlichtes T-Shirt",
            "Hemdbluse mit Knopfleiste",
        ),
    ),
    "fr": (
        (
            "une photo d'un t-shirt",
            "une photo d'un pantalon",
            "une photo d'un pull",
            "une photo d'une robe",
            "une photo d'un manteau",
            "une photo d'une sandale",
            "une photo d'une chemise",
            "une photo d'une basket",
            "une photo d'un sac",
            "une photo d'une bottine",
        ),
        (
            "chaussures de course",
            "sac à main",
            "veste d'hiver",
            "jean",
            "pull en tricot",
            "robe de soirée",
            "tongs",
            "bottines en cuir",
            "t-shirt uni",
            "chemisier boutonné",
        ),
    ),
    "es": (
        (
            "una foto de una camiseta",
            "una foto de un pantalón",
            "una foto de un jersey",
            "una foto de un vestido",
            "una foto de un abrigo",
            "una foto de una sandalia",
            "una foto de una camisa",
            "una foto de una zapatilla deportiva",
            "una foto de un bolso",
            "una foto de un botín",
        ),
        (
            "zapatillas para correr",
            "bolso de mano",
            "chaqueta de invierno",
            "vaqueros",
            "jersey de punto",
            "vestido de noche",
            "chanclas",
            "botines de cuero",
            "camiseta lisa",
            "blusa abotonada",
        ),
    ),
    "it": (
        (
            "una foto di una maglietta",
            "una foto di un paio di pantaloni",
            "una foto di un pullover",
            "una foto di un vestito",
            "una foto di un cappotto",
            "una foto di un sandalo",
            "una foto di una camicia",
            "una foto di una sneaker",
            "una foto di una borsa",
            "una foto di uno stivaletto",
        ),
        (
            "scarpe da corsa",
            "borsetta",
            "giacca invernale",
            "jeans",
            "maglione lavorato a maglia",
            "abito da sera",
            "infradito",
            "stivaletti di pelle",
            "maglietta semplice",
            "camicetta abbottonata",
        ),
    ),
    "pt": (
        (
            "uma foto de uma camiseta",
            "uma foto de uma calça",
            "uma foto de um pulôver",
            "uma foto de um vestido",
            "uma foto de um casaco",
            "uma foto de uma sandália",
            "uma foto de uma camisa",
            "uma foto de um tênis",
            "uma foto de uma bolsa",
            "uma foto de uma bota de cano curto",
        ),
        (
            "tênis de corrida",
            "bolsa de mão",
            "jaqueta de inverno",
            "calça jeans",
            "suéter de tricô",
            "vestido de gala",
            "chinelos",
            "botinhas de couro",
            "camiseta básica",
            "blusa de botões",
        ),
    ),
    "ru": (
        (
            "фотография футболки",
            "фотография брюк",
            "фотография пуловера",
            "фотография платья",
            "фотография пальто",
            "фотография сандалии",
            "фотография рубашки",
            "фотография кроссовка",
            "фотография сумки",
            "фотография ботильона",
        ),
        (
            "кроссовки для бега",
            "дамская сумочка",
            "зимняя куртка",
            "джинсы",
            "вязаный свитер",
            "вечернее платье",
            "шлёпанцы",
            "кожаные ботильоны",
            "простая футболка",
            "блузка на пуговицах",
        ),
    ),
    "ja": (
        (
            "Tシャツの写真",
            "ズボンの写真",
            "プルオーバーの写真",
            "ワンピースの写真",
            "コートの写真",
            "サンダルの写真",
            "シャツの写真",
            "スニーカーの写真",
            "バッグの写真",
            "アンクルブーツの写真",
        ),
        (
            "ランニングシューズ",
            "ハンドバッグ",
            "冬用ジャケット",
            "ジーンズ",
            "ニットセーター",
            "イブニングドレス",
            "ビーチサンダル",
            "革のショートブーツ",
            "無地のTシャツ",
            "ボタンダウンのブラウス",
        ),
    ),
    "zh": (
        (
            "一张T恤的照片",
            "一张裤子的照片",
            "一张套头衫的照片",
            "一张连衣裙的照片",
            "一张大衣的照片",
            "一张凉鞋的照片",
            "一张衬衫的照片",
            "一张运动鞋的照片",
            "一张包的照片",
            "一张短靴的照片",
        ),
        (
            "跑步鞋",
            "手提包",
            "冬季夹克",
            "牛仔裤",
            "针织毛衣",
            "晚礼服",
            "人字拖",
            "皮质短靴",
            "纯色T恤",
            "系扣衬衫",
        ),
    ),
}


def class_prompts() -> dict[str, str]:
    """English class prompts, the training template: "a photo of a sneaker" -> Sneaker."""
    return {f"a photo of a {name.lower()}": name for name in CLASSES}


def translations() -> dict[str, dict[str, dict[str, str]]]:
    """language -> {"class_prompts": {query: class}, "paraphrases": {query: class}}, with
    English first (the same queries as the top-level sets) so every table has its row."""
    paraphrase_classes = list(PARAPHRASES.values())
    out = {"en": {"class_prompts": class_prompts(), "paraphrases": dict(PARAPHRASES)}}
    for language, (prompts, paraphrases) in _TRANSLATED.items():
        out[language] = {
            "class_prompts": dict(zip(prompts, CLASSES, strict=True)),
            "paraphrases": dict(zip(paraphrases, paraphrase_classes, strict=True)),
        }
    return out


def eval_queries() -> dict[str, object]:
    """The content of the demo's `eval_queries.json`."""
    return {
        "class_prompts": class_prompts(),
        "paraphrases": dict(PARAPHRASES),
        "translations": translations(),
        "split": "test",
        "gallery_split": "train",
    }
