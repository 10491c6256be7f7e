-- Did incidents slow the fleet? Vehicle fixes within about 1.5 km of an incident while it was active.
WITH incidents AS (
    SELECT
        incidentid,
        MIN(type) AS type,
        MIN(description) AS description,
        MIN(latitude) AS lat,
        MIN(longitude) AS lon,
        MIN(CASE WHEN status = 'Active' THEN "timestamp" END) AS started,
        MAX(CASE WHEN status = 'Resolved' THEN "timestamp" END) AS resolved
    FROM smartcity.emergency_data
    GROUP BY incidentid
)
SELECT
    i.incidentid AS incident,
    i.type,
    i.description,
    i.started,
    i.resolved,
    COUNT(v.id) AS fixes_nearby_while_active,
    ROUND(AVG(v.speed)::numeric, 1) AS avg_speed_nearby_kmh
FROM incidents AS i
LEFT JOIN smartcity.vehicle_data AS v
    ON v."timestamp" BETWEEN i.started AND i.resolved
    AND ABS(v.latitude - i.lat) < 0.0135
    AND ABS(v.longitude - i.lon) < 0.022
GROUP BY i.incidentid, i.type, i.description, i.started, i.resolved
ORDER BY i.started, incident;
