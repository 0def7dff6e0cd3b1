"""The tables, and `flask init-db`, which makes them afresh with seed data."""

from __future__ import annotations

from datetime import datetime

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


store = SQLAlchemy(model_class=Base)

PRODUCTS = 1000
ORDERS_PER_PRODUCT = 5


class Product(store.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    price_cents: Mapped[int]
    stock: Mapped[int]


class Order(store.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


@click.command("init-db")
def init_db() -> None:
    """Drop and create the tables, with a thousand products and a few orders each."""
    store.drop_all()
    store.create_all()
    store.session.execute(
        Product.__table__.insert(),
        [
            {"id": n, "name": f"product {n}", "price_cents": 100 + n, "stock": 10**9}
            for n in range(1, PRODUCTS + 1)
        ],
    )
    store.session.execute(
        Order.__table__.insert(),
        [
            {"product_id": n, "quantity": 1 + k}
            for n in range(1, PRODUCTS + 1)
            for k in range(ORDERS_PER_PRODUCT)
        ],
    )
    store.session.commit()
    click.echo(f"created {PRODUCTS} products and {PRODUCTS * ORDERS_PER_PRODUCT} orders")


def init_app(app: Flask) -> None:
    store.init_app(app)
    app.cli.add_command(init_db)
