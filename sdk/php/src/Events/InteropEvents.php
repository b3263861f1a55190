<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Events;

use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Time\Instant;

/**
 * `POST /api/v1/plugins/interop/event`: the platform's own events (e.g.
 * woocommerce_checkout_order_processed), normalized by the server into CloudEvents. With a
 * source_event_id (the platform's delivery id) a resend is recognised as a duplicate, so
 * such an event is retried on 5xx and network failures; without one it is not.
 */
final class InteropEvents
{
    private Client $client;

    public function __construct(Client $client)
    {
        $this->client = $client;
    }

    /** @param array<string, mixed> $payload */
    public function send(string $installationId, string $eventType, array $payload, ?string $sourceEventId = null, ?Instant $occurredAt = null): InteropResult
    {
        if ($eventType === '' || strlen($eventType) > 128) {
            throw new \InvalidArgumentException('event_type must be 1 to 128 characters');
        }
        $body = ['plugin_id' => $installationId, 'event_type' => $eventType, 'payload' => (object) $payload];
        if ($sourceEventId !== null) {
            $body['source_event_id'] = $sourceEventId;
        }
        if ($occurredAt !== null) {
            $body['occurred_at'] = $occurredAt->format();
        }
        return InteropResult::parse($this->client->post('api/v1/plugins/interop/event', $body, $sourceEventId !== null));
    }
}
