"""Product pages read through Redis; a sales report that holds its connection; orders that write."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, request
from sqlalchemy import func, select, text, update

from catalog.db import Order, Product, store

bp = Blueprint("catalog", __name__)
CACHE_S = 60


@bp.get("/products/<int:product_id>")
def product(product_id: int) -> dict[str, object]:
    """From the cache when it has the product, else from the database (then cached)."""
    cache = current_app.extensions["cache"]
    key = f"product:{product_id}"
    if (cached := cache.get(key)) is not None:
        return {**json.loads(cached), "cached": True}
    found = store.session.get(Product, product_id)
    if found is None:
        abort(404)
    page = {"id": found.id, "name": found.name, "price_cents": found.price_cents}
    cache.set(key, json.dumps(page), ex=CACHE_S)
    return {**page, "cached": False}


@bp.get("/products/<int:product_id>/sales")
def sales(product_id: int) -> dict[str, object]:
    """A report straight from the database. `ms` stands in for a slow query (a sequential scan,
    a lock): the request holds its pooled connection that long, waiting, not on a CPU."""
    slow_s = float(request.args.get("ms", "0")) / 1000
    if slow_s:
        store.session.execute(text("SELECT pg_sleep(:s)"), {"s": slow_s})
    orders, units = store.session.execute(
        select(func.count(Order.id), func.coalesce(func.sum(Order.quantity), 0)).where(
            Order.product_id == product_id
        )
    ).one()
    return {"product": product_id, "orders": orders, "units": units}


@bp.post("/orders")
def order() -> tuple[dict[str, object], int]:
    """One order in one transaction: the stock goes down, the order is written, the cached page
    goes (it shows no stock, but a real shop's would)."""
    wanted = request.get_json(force=True)
    product_id, quantity = int(wanted["product_id"]), int(wanted.get("quantity", 1))
    changed = store.session.execute(
        update(Product)
        .where(Product.id == product_id, Product.stock >= quantity)
        .values(stock=Product.stock - quantity)
    )
    if changed.rowcount != 1:
        store.session.rollback()
        abort(409)
    placed = Order(product_id=product_id, quantity=quantity)
    store.session.add(placed)
    store.session.commit()
    current_app.extensions["cache"].delete(f"product:{product_id}")
    return {"order": placed.id, "product": product_id}, 201
