<?php

declare(strict_types=1);

use Autoheal\Sdk\Agent\Agent;

/**
 * The seed's Molam_Heartbeat: counts payment outcomes for the heartbeat's error rate and
 * acts on Ops' toggles. Sending the heartbeat itself is part of the agent's tick.
 */
final class Molam_Heartbeat
{
    private const OUTCOMES = 'molam_outcomes_hour';

    public function __construct()
    {
        add_action('molam_payment_error', function (): void {
            $this->count('failed');
        });
        add_action('molam_payment_success', function (): void {
            $this->count('ok');
        });
    }

    /** Percent of this hour's payments that failed (the seed's calculate_error_rate). */
    public function error_rate(): float
    {
        $o = $this->outcomes();
        $total = $o['ok'] + $o['failed'];
        return $total === 0 ? 0.0 : round(100 * $o['failed'] / $total, 2);
    }

    public function watch_toggles(Agent $agent): void
    {
        $agent->onBlockPlugin(static function (bool $blocked): void {
            if ($blocked) {
                deactivate_plugins(plugin_basename(__DIR__ . '/molam-autoheal.php'));
                update_option('molam_blocked_by_ops', true);
            }
        });
        $agent->onEnableDebug(static fn (bool $on) => update_option('molam_debug', $on));
        $agent->onRateLimit(static fn (?int $perMinute) => update_option('molam_rate_limit', $perMinute));
        $agent->onNotices(static fn (array $notices) => update_option('molam_upgrade_notices', count($notices)));
    }

    private function count(string $outcome): void
    {
        $o = $this->outcomes();
        $o[$outcome]++;
        update_option(self::OUTCOMES, $o, false);
    }

    /** @return array{hour: string, ok: int, failed: int} */
    private function outcomes(): array
    {
        $o = get_option(self::OUTCOMES, []);
        $hour = gmdate('YmdH');
        return is_array($o) && ($o['hour'] ?? '') === $hour ? $o : ['hour' => $hour, 'ok' => 0, 'failed' => 0];
    }
}
