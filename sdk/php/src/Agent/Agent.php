<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Agent;

use Autoheal\Sdk\AutohealException;
use Autoheal\Sdk\Events\InteropEvents;
use Autoheal\Sdk\Events\TelemetryEvents;
use Autoheal\Sdk\Heartbeat\Heartbeat;
use Autoheal\Sdk\Heartbeat\HeartbeatResult;
use Autoheal\Sdk\Heartbeat\Notice;
use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Http\ProtocolException;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Log\Logger;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Verify\Uuid;

/**
 * The one entry point a plugin calls from its cron: tick() is
 *
 *   1. finish what a crash interrupted (undo a half-done apply, ack it failed);
 *   2. heartbeat (state, toggles, notices; learns the installation id);
 *   3. resend acks the server does not have yet;
 *   4. poll commands into the journal's inbox;
 *   5. for each command in the inbox: verify → journal → apply → ack.
 *
 * Ticks never overlap (the journal's lock). A failure of one step is reported and the
 * others still run where they can; nothing a tick leaves unfinished is lost, the journal
 * carries it to the next.
 */
final class Agent
{
    private const LOCK_TTL = 300;

    private Client $client;
    private Heartbeat $heartbeat;
    private Journal $journal;
    private CommandProcessor $processor;
    private TelemetryEvents $events;
    private Logger $logger;
    /** @var array<string, callable> */
    private array $callbacks = [];

    public function __construct(Client $client, Heartbeat $heartbeat, Journal $journal, CommandProcessor $processor, TelemetryEvents $events, Logger $logger)
    {
        $this->client = $client;
        $this->heartbeat = $heartbeat;
        $this->journal = $journal;
        $this->processor = $processor;
        $this->events = $events;
        $this->logger = $logger;
    }

    /** @param callable(bool $blocked, ?string $reason): void $callback called every tick with the toggle's value */
    public function onBlockPlugin(callable $callback): self
    {
        $this->callbacks['block_plugin'] = $callback;
        return $this;
    }

    /** @param callable(bool): void $callback */
    public function onEnableDebug(callable $callback): self
    {
        $this->callbacks['enable_debug'] = $callback;
        return $this;
    }

    /** @param callable(bool): void $callback */
    public function onForceUpdate(callable $callback): self
    {
        $this->callbacks['force_update'] = $callback;
        return $this;
    }

    /** @param callable(?int $requestsPerMinute): void $callback */
    public function onRateLimit(callable $callback): self
    {
        $this->callbacks['rate_limit'] = $callback;
        return $this;
    }

    /** @param callable(list<Notice>): void $callback called when the heartbeat carries upgrade notices */
    public function onNotices(callable $callback): self
    {
        $this->callbacks['notices'] = $callback;
        return $this;
    }

    public function tick(): TickReport
    {
        if (!$this->journal->acquireLock(self::LOCK_TTL)) {
            return TickReport::skipped('another tick is running');
        }
        try {
            $report = new TickReport();
            $interrupted = [];
            $this->step($report, 'recovery', function () use (&$interrupted): void {
                $interrupted = $this->journal->interrupted();
            });
            foreach ($interrupted as $record) {
                $this->step($report, 'recovery of ' . $record->id(), function () use ($report, $record): void {
                    $report->add($this->processor->recover($record));
                });
            }
            $this->step($report, 'heartbeat', function () use ($report): void {
                $result = $this->heartbeat->send();
                $report->setHeartbeat($result);
                $this->surface($result);
            });
            $installId = $this->heartbeat->installationId();
            $report->setInstallationId($installId);
            $this->step($report, 'acks', function () use ($report): void {
                foreach ($this->journal->undeliveredAcks() as $record) {
                    $this->processor->resend($record);
                    $report->ackResent();
                }
            });
            if ($installId === null) {
                $report->error('commands: no installation id yet (no heartbeat has been answered)');
                return $report;
            }
            $this->step($report, 'poll', function () use ($installId): void {
                $this->poll($installId);
            });
            foreach (CommandProcessor::order($this->journal->inbox()) as $id => $json) {
                $this->step($report, 'command ' . $id, function () use ($report, $id, $json, $installId): void {
                    $report->add($this->processor->process((string) $id, $json, $installId));
                });
            }
            return $report;
        } finally {
            $this->journal->releaseLock();
        }
    }

    /** Telemetry events (payment outcomes, errors). */
    public function events(): TelemetryEvents
    {
        return $this->events;
    }

    public function interop(): InteropEvents
    {
        return new InteropEvents($this->client);
    }

    public function installationId(): ?string
    {
        return $this->heartbeat->installationId();
    }

    /** The merchant saw an upgrade notice: it stops coming back in heartbeats. */
    public function acknowledgeNotice(string $noticeId): void
    {
        $this->client->post(Client::path('api/v1/plugins/notifications/%s/ack', $noticeId), new \stdClass(), true);
    }

    private function poll(string $installId): void
    {
        $items = $this->client->get(Client::path('api/v1/plugins/autoheal/commands/%s', $installId));
        if (!is_array($items)) {
            throw new ProtocolException('the command poll did not answer an array');
        }
        foreach ($items as $item) {
            // Into the inbox first, as received: a crash from here on loses nothing.
            $json = Json::encode($item);
            $id = $item instanceof \stdClass && isset($item->id) && is_string($item->id) && $item->id !== ''
                ? (Uuid::normalize($item->id) ?? $item->id)
                : CommandProcessor::UNLISTED . substr(hash('sha256', $json), 0, 32);
            $this->journal->addToInbox($id, $json);
        }
    }

    private function surface(HeartbeatResult $result): void
    {
        $t = $result->toggles();
        $calls = [
            'block_plugin' => [$t->blockPlugin(), null],
            'enable_debug' => [$t->enableDebug()],
            'force_update' => [$t->forceUpdate()],
            'rate_limit' => [$t->rateLimit()],
        ];
        if ($result->notices() !== []) {
            $calls['notices'] = [$result->notices()];
        }
        foreach ($calls as $name => $args) {
            if (isset($this->callbacks[$name])) {
                ($this->callbacks[$name])(...$args);
            }
        }
    }

    /** Runs one step; its failure is logged and reported, and the tick goes on. */
    private function step(TickReport $report, string $name, callable $work): void
    {
        try {
            $work();
        } catch (AutohealException | \PDOException $e) {
            $this->logger->log('error', 'tick step failed', ['step' => $name, 'error' => $e->getMessage()]);
            $report->error($name . ': ' . $e->getMessage());
        }
    }
}
