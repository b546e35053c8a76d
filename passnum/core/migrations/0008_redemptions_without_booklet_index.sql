-- A batch now loads the redemptions of the vouchers its commands name (primary key), not
-- of their whole booklets: nothing reads redemptions by booklet any more, and every
-- redemption paid for maintaining this index.
DROP INDEX IF EXISTS redemptions_by_booklet;
