<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Agent;

use Autoheal\Sdk\Apply\ApplyOutcome;
use Autoheal\Sdk\Http\ApiError;
use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Http\TransportException;
use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Log\Logger;
use Autoheal\Sdk\Support\Text;

/**
 * Builds acks (sdk/schemas/ack.json) and delivers them. An ack is recorded in the journal
 * before it is sent, so one that does not get through is sent again on a later tick; the
 * server takes the same ack twice (`repeated`) and refuses a contradicting one.
 */
final class Acks
{
    /** The server keeps 500 characters of an error as the log's reason. */
    private const MAX_ERROR = 500;

    private Client $client;
    private Journal $journal;
    private Logger $logger;
    private string $pluginVersion;

    public function __construct(Client $client, Journal $journal, Logger $logger, string $pluginVersion)
    {
        $this->client = $client;
        $this->journal = $journal;
        $this->logger = $logger;
        $this->pluginVersion = $pluginVersion;
    }

    /** @return array<string, mixed> */
    public function refused(string $reason, string $message): array
    {
        return ['success' => false, 'outcome' => 'refused', 'result' => ['reason' => $reason, 'error' => Text::clean($message, self::MAX_ERROR)]];
    }

    /**
     * After an apply_patch: on failure `applied_operations` says what is still in effect
     * (0 when the undo was complete). A rollback's ack carries no count (the server ignores it).
     *
     * @return array<string, mixed>
     */
    public function applied(bool $rollback, ApplyOutcome $outcome): array
    {
        if ($outcome->isSuccess()) {
            $result = ['plugin_version' => $this->pluginVersion];
            if (!$rollback) {
                $result['applied_operations'] = $outcome->inEffect();
            }
            return ['success' => true, 'result' => $result];
        }
        $result = ['error' => Text::clean((string) $outcome->error(), self::MAX_ERROR)];
        if (!$rollback) {
            $result['applied_operations'] = $outcome->inEffect();
        }
        return ['success' => false, 'result' => $result];
    }

    /**
     * Sends the record's ack and records the result: delivered; rejected for good (the server
     * does not know the command, or holds another ack for it); or still pending (network,
     * 5xx, 429, 401 — worth another try later).
     */
    public function deliver(CommandRecord $record): CommandRecord
    {
        $ack = $record->ack();
        if ($ack === null) {
            throw new \LogicException('no ack recorded for ' . $record->id());
        }
        $body = $ack;
        $body['result'] = (object) ($ack['result'] ?? []);
        try {
            $this->client->post('api/v1/plugins/autoheal/commands/' . rawurlencode($record->id()) . '/ack', $body, true);
            $record = $record->withAckState(CommandRecord::ACK_DELIVERED);
        } catch (ApiError $e) {
            if (in_array($e->status(), [400, 403, 404, 409, 422], true)) {
                $this->logger->log('error', 'the server refused an ack', ['command' => $record->id(), 'error' => $e->getMessage()]);
                $record = $record->withAckState(CommandRecord::ACK_REJECTED, $e->getMessage());
            } else {
                $this->logger->log('warning', 'ack not delivered, retried next tick', ['command' => $record->id(), 'error' => $e->getMessage()]);
                $record = $record->withAckState(CommandRecord::ACK_PENDING, $e->getMessage());
            }
        } catch (TransportException $e) {
            $this->logger->log('warning', 'ack not delivered, retried next tick', ['command' => $record->id(), 'error' => $e->getMessage()]);
            $record = $record->withAckState(CommandRecord::ACK_PENDING, $e->getMessage());
        }
        $this->journal->save($record);
        return $record;
    }
}
