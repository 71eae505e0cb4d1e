"""regions: the region a job is placed in and why (placement explanation), and the jurisdiction tag of artifacts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("region", sa.String(100), nullable=True))
        batch.add_column(sa.Column("placement", sa.JSON(), nullable=True))
    op.create_index(op.f("ix_jobs_region"), "jobs", ["region"])
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("jurisdiction", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("jurisdiction")
    op.drop_index(op.f("ix_jobs_region"), table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("placement")
        batch.drop_column("region")
