"""api: API tokens (hashed), project members, and which project owns which artifact (tenant scoping)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_tokens_secret_sha256")),
    )
    op.create_index(op.f("ix_api_tokens_project"), "api_tokens", ["project"])
    op.create_table(
        "members",
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("project", "user", name=op.f("pk_members")),
    )
    op.create_table(
        "project_artifacts",
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("added_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("project", "sha256", name=op.f("pk_project_artifacts")),
    )
    op.create_index(op.f("ix_project_artifacts_sha256"), "project_artifacts", ["sha256"])


def downgrade() -> None:
    op.drop_index(op.f("ix_project_artifacts_sha256"), table_name="project_artifacts")
    op.drop_table("project_artifacts")
    op.drop_table("members")
    op.drop_index(op.f("ix_api_tokens_project"), table_name="api_tokens")
    op.drop_table("api_tokens")
