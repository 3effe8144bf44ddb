-- One row per accepted request id: the idempotency record. A retried request finds its row here
-- and gets the original answer back.
CREATE TABLE calculator.requests (
  request_id  text PRIMARY KEY,
  num1        bigint NOT NULL,
  num2        bigint NOT NULL,
  sum         bigint NOT NULL,
  event_id    uuid NOT NULL UNIQUE,
  accepted_at timestamptz NOT NULL DEFAULT now()
);

-- Events waiting to be published. A row is written in the same statement as its request row and
-- deleted only after Kafka acknowledged it.
CREATE TABLE calculator.outbox (
  id          bigserial PRIMARY KEY,
  event_id    uuid NOT NULL,
  topic       text NOT NULL,
  message_key text NOT NULL,
  payload     text NOT NULL,
  headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Wakes the relays as soon as new events commit (NOTIFY is delivered on commit, and repeated
-- notifications in one transaction are folded into one). Polling remains the fallback.
CREATE FUNCTION calculator.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('summa_outbox', '');
  RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify
  AFTER INSERT ON calculator.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION calculator.notify_outbox();
