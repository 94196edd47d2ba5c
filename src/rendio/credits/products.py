"""The credit packs on sale: App Store product id → credits, from a packaged or configured file.

The file is read and validated once at start; a bad file stops the start with the product and
field at fault, like a bad setting.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ProductsError(Exception):
    """The products file is unreadable or invalid; the message says where."""


class Product(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$")
    credits: int = Field(gt=0, le=1_000_000)
    display_name: str = Field(min_length=1, max_length=100)


class ProductList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    products: list[Product]

    @field_validator("products")
    @classmethod
    def _unique_ids(cls, products: list[Product]) -> list[Product]:
        seen: set[str] = set()
        for product in products:
            if product.product_id in seen:
                raise ValueError(f"product_id {product.product_id!r} appears twice")
            seen.add(product.product_id)
        return products

    def find(self, product_id: str) -> Product | None:
        return next((p for p in self.products if p.product_id == product_id), None)


def load_products(path: Path | None) -> ProductList:
    """Products from `path` (YAML or JSON), or the packaged default list."""
    try:
        if path is None:
            text = resources.files("rendio.credits").joinpath("products.yaml").read_text()
        else:
            text = path.read_text()
        raw = yaml.safe_load(text)  # YAML 1.2 reads JSON files too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ProductsError(f"products file {path}: {error}") from None
    try:
        return ProductList.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise ProductsError(f"products file {path or 'default'}: {problems}") from None
